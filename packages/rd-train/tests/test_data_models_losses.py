import pytest
import torch
import torchvision
from rd_train.config import DataConfig, ModelConfig
from rd_train.data import TRAIN_PHOTOS, VAL_PHOTOS, ImageDataModule, build_embedded, save_embedded
from rd_train.losses import pixel_sse
from rd_train.losses.adversarial import PatchGANLoss
from rd_train.losses.perceptual import DINOv2Loss, LPIPSLoss, MissingWeightsError
from rd_train.models import build_model


def test_embedded_dataset_is_deterministic_and_split_by_photo(tmp_path):
    a = build_embedded(TRAIN_PHOTOS, 64, 16, seed=3)
    assert torch.equal(a, build_embedded(TRAIN_PHOTOS, 64, 16, seed=3))
    assert not torch.equal(a, build_embedded(TRAIN_PHOTOS, 64, 16, seed=4))
    assert not set(TRAIN_PHOTOS) & set(VAL_PHOTOS)
    assert a.float().std() > 20  # natural images, not a constant
    config = DataConfig(n_train=64, n_val=16, image_size=16, root=str(tmp_path))
    save_embedded(tmp_path, config)
    dm = ImageDataModule(config)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (64 if config.batch_size > 64 else config.batch_size, 3, 16, 16)
    assert batch.min() >= -1.0 and batch.max() <= 1.0


def test_a_batch_is_loaded_in_a_few_ops_with_the_per_image_values(tmp_path):
    from rd_kernels.testing import DispatchLog

    config = DataConfig(n_train=96, n_val=40, image_size=16, root=str(tmp_path), batch_size=32)
    save_embedded(tmp_path, config)
    dm = ImageDataModule(config)
    dm.setup()
    for loader, images in ((dm.train_dataloader(), dm.train_set), (dm.val_dataloader(), dm.val_set)):
        batches = 0
        for batch, indices in zip(loader, loader.batch_sampler, strict=True):
            assert torch.equal(batch, torch.stack([images[i] for i in indices]))  # bit for bit
            batches += 1
        assert batches == len(loader) > 1
    loader = iter(dm.train_dataloader())
    next(loader)  # the epoch's shuffle
    with DispatchLog() as log:
        next(loader)
    # index list to tensor, gather, float, divide, subtract: not a few ops per image and a stack
    assert len(log.compute_ops()) <= 5, log.ops


@pytest.mark.parametrize("accelerator", ["cpu", "gpu"])
def test_batches_are_pinned_exactly_when_the_run_trains_on_cuda(accelerator):
    """From pageable memory a copy to the GPU may wait for the stream (see ImageDataModule): a run on
    CUDA loads into page-locked memory. On the CPU pinning would only cost a copy."""
    from rd_train import from_dict
    from rd_train.run import data_module

    data = data_module(from_dict({"accelerator": accelerator}))
    data.setup()
    on_cuda = accelerator == "gpu"
    assert data.train_dataloader().pin_memory is on_cuda
    assert data.val_dataloader().pin_memory is on_cuda


def test_missing_local_data_says_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="rd-train prepare"):
        ImageDataModule(DataConfig(root=str(tmp_path / "absent"))).setup()
    with pytest.raises(FileNotFoundError, match="no download is attempted"):
        ImageDataModule(DataConfig(name="celeba", root=str(tmp_path))).setup()


@pytest.mark.parametrize("kind", ["vector", "spatial"])
def test_models_share_one_interface(kind):
    model = build_model(ModelConfig(kind=kind), 32)
    mu, logvar = model.encode(torch.randn(2, 3, 32, 32))
    assert mu.shape == logvar.shape
    assert model.decode(mu).shape == (2, 3, 32, 32)
    if kind == "spatial":
        assert mu.dim() == 4  # a spatial latent grid


def test_pythae_celeba_setting_has_the_papers_size():
    model = build_model(ModelConfig(channels=[128, 256, 512, 1024], latent_dim=64), 64)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(25.2e6, rel=0.01)


def test_pixel_sse_is_a_per_image_sum():
    x = torch.zeros(2, 3, 4, 4)
    assert float(pixel_sse(x, x + 0.5)) == pytest.approx(3 * 16 * 0.25)


def test_patchgan_losses():
    loss = PatchGANLoss(channels=8, n_layers=2)
    x, x_hat = torch.rand(2, 3, 32, 32) * 2 - 1, torch.zeros(2, 3, 32, 32, requires_grad=True)
    d = loss.discriminator_loss(x, x_hat)
    assert float(d) >= 0
    g = loss.generator_loss(x, x_hat)
    g.backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    # Feature matching vanishes for a perfect reconstruction: only the score term is left.
    loss.eval()
    assert float(loss.generator_loss(x, x)) == pytest.approx(-float(loss.discriminator(x).mean()), abs=1e-6)


def test_lpips_needs_local_backbone_and_loads_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingWeightsError, match=r"vgg16-397923af\.pth.*TORCH_HOME"):
        LPIPSLoss("vgg")
    path = tmp_path / "vgg16.pth"
    torch.save(torchvision.models.vgg16().state_dict(), path)  # random weights, real file format
    loss = LPIPSLoss("vgg", weights_path=str(path))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert float(loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(x, x.flip(-1))) > 0
    state = torch.load(path, weights_only=True)
    torch.testing.assert_close(loss.model.net.slice1[0].weight, state["features.0.weight"])


def test_dinov2_distance_with_a_small_random_vit(tmp_path):
    import timm

    vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, depth=2, embed_dim=48,
                            num_heads=2, img_size=28, dynamic_img_size=True)
    loss = DINOv2Loss(layers=[0, 1], model=vit)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert float(loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(x, -x)) > 0
    with pytest.raises(MissingWeightsError, match="weights_path"):
        DINOv2Loss(weights_path=str(tmp_path / "nope.safetensors"))
