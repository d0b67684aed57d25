"""The target-feature table changes what a VGG16 (HED) step costs, never what it computes: a short fit's
metrics are equal bit for bit with and without it, and any call it cannot answer runs the network."""

import json

import pytest
import torch
from rd_train import from_dict
from rd_train.config import ConfigError
from rd_train.feature_table import (
    FeatureTable,
    TabledFeatures,
    target_tabled_loss,
    training_targets,
    with_target_table,
)
from rd_train.losses.vgg16 import VGG16FeatureLoss
from rd_train.run import fit


@pytest.fixture(scope="module")
def loss_and_images():
    torch.manual_seed(0)
    images = torch.rand(40, 3, 16, 16) * 2 - 1
    return VGG16FeatureLoss(2), images


def test_the_table_holds_the_features_of_training_size_batches_bit_for_bit(loss_and_images):
    loss, images = loss_and_images
    table = FeatureTable.build(loss.features, images, batch_size=16)  # 40 = 16 + 16 + 8 (filled up)
    for start in (0, 16):
        batch = images[start:start + 16]
        for stored, computed in zip(table.lookup(batch), loss.features(batch), strict=True):
            assert torch.equal(stored, computed)
    shuffled = images[torch.randperm(40)[:16]]  # another batch of the same size, any images of the table
    for stored, computed in zip(table.lookup(shuffled), loss.features(shuffled), strict=True):
        assert torch.equal(stored, computed)
    assert table.nbytes == 40 * (64 * 16 * 16 + 128 * 8 * 8) * 4


def test_a_call_the_table_cannot_answer_runs_the_network(loss_and_images):
    base, images = loss_and_images
    loss = with_target_table(VGG16FeatureLoss(2), images, batch_size=16)
    assert isinstance(loss.features, TabledFeatures)
    assert set(loss.state_dict()) == set(base.state_dict())  # same keys: checkpoints unchanged
    calls = []
    handle = loss.features[0].register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        loss.features(images[:16])
    assert calls == []  # answered from the table
    outside = torch.cat([images[:15], torch.zeros(1, 3, 16, 16)])
    with torch.no_grad():
        loss.features(outside)  # one image not in the table
    needs_grad = images[:16].clone().requires_grad_()
    loss.features(needs_grad)  # a reconstruction
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        loss.features(images[:16])  # autocast computes other features than the fp32 table
    handle.remove()
    assert len(calls) == 3
    x_hat = (images[:16] + 0.1 * torch.randn(16, 3, 16, 16)).requires_grad_()
    grad_tabled, = torch.autograd.grad(loss(images[:16], x_hat), x_hat)
    grad_base, = torch.autograd.grad(base(images[:16], x_hat), x_hat)
    assert torch.equal(grad_tabled, grad_base)


def test_a_fit_with_the_table_has_the_metrics_of_one_without_it(tiny):
    config = tiny(loss={"neural": "vgg16_hed", "lam": 1.0}, optim={"max_steps": 24})
    config["data"]["n_train"] = 64  # 2 batches an epoch: every (image, flip) recurs, from the table
    plain = fit(from_dict({**config, "out_dir": config["out_dir"] + "-plain"}))
    tabled_config = from_dict({**config, "out_dir": config["out_dir"] + "-tabled"})
    loss = target_tabled_loss(tabled_config)
    assert training_targets(tabled_config).shape[0] == 128  # each image and its mirror
    tabled = fit(tabled_config, neural_loss=loss)
    assert loss.features.answered == 24  # every step's targets came from the table
    for metrics in (plain, tabled):
        for key in ("train_seconds_this_process", "config"):
            metrics.pop(key)
    assert json.dumps(plain, sort_keys=True) == json.dumps(tabled, sort_keys=True)


def test_configs_the_table_cannot_serve_are_named(tiny):
    with pytest.raises(ConfigError, match=r"loss\.neural='none'"):
        target_tabled_loss(from_dict(tiny()))
    with pytest.raises(ConfigError, match="precision='bf16-mixed'"):
        bf16 = tiny(loss={"neural": "vgg16_hed", "lam": 1.0}) | {"precision": "bf16-mixed"}
        target_tabled_loss(from_dict(bf16))
    loss, images = VGG16FeatureLoss(2), torch.rand(8, 3, 16, 16)
    with pytest.raises(ValueError, match="GiB"):
        with_target_table(loss, images, batch_size=8, max_bytes=1000)
