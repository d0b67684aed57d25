"""The target-feature table changes what a VGG16 (HED) step costs, never what it computes: a short fit's
metrics are equal bit for bit with and without it, and any call it cannot answer runs the network."""

import json

import pytest
import torch
from rd_train import from_dict
from rd_train.config import ConfigError
from rd_train.training.feature_table import (
    FeatureTable,
    TabledFeatures,
    target_tabled_loss,
    training_targets,
    with_target_table,
)
from rd_train.training.losses.vgg16 import VGG16FeatureLoss
from rd_train.training.run import fit


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


def test_the_shared_table_is_built_once_and_memory_mapped(loss_and_images, tmp_path, monkeypatch):
    import threading
    from pathlib import Path

    import rd_train.training.feature_table as ft

    loss, images = loss_and_images
    builds = []
    real_build = ft.FeatureTable.build.__func__

    def counted(cls, *args, **kwargs):
        builds.append(1)
        return real_build(cls, *args, **kwargs)

    monkeypatch.setattr(ft.FeatureTable, "build", classmethod(counted))
    tables = []

    def build() -> None:
        tables.append(ft.shared_table(loss.features, images, 16, tmp_path))

    workers = [threading.Thread(target=build) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(builds) == 1 and len(tables) == 2  # the second waited on the lock, then mapped the file
    files = list(tmp_path.glob("*.pt"))
    assert [f.stem for f in files] == [ft.fingerprint(loss.features, images, 16)]
    assert str(files[0]) in Path("/proc/self/maps").read_text()  # memory-mapped, not read into memory
    reference = ft.FeatureTable.build(loss.features, images, 16)
    for table in tables:
        for mapped, built in zip(table.features, reference.features, strict=True):
            assert torch.equal(mapped, built)
        batch = images[torch.randperm(40)[:16]]
        for stored, computed in zip(table.lookup(batch), loss.features(batch), strict=True):
            assert torch.equal(stored, computed)


def test_a_stale_table_is_rebuilt_never_read(loss_and_images, tmp_path):
    import rd_train.training.feature_table as ft

    loss, images = loss_and_images
    ft.shared_table(loss.features, images, 16, tmp_path)
    changed = images.clone()
    changed[3, 0, 0, 0] += 0.5  # one pixel of one image: another fingerprint, another file
    assert ft.fingerprint(loss.features, changed, 16) != ft.fingerprint(loss.features, images, 16)
    other = ft.shared_table(loss.features, changed, 16, tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 2
    assert torch.equal(other.lookup(changed[:16])[0], loss.features(changed[:16])[0])
    # A file under the right name holding another table (copied, or a fingerprint collision) is rebuilt.
    key = ft.fingerprint(loss.features, images, 16)
    other_file = tmp_path / f"{ft.fingerprint(loss.features, changed, 16)}.pt"
    (tmp_path / f"{key}.pt").write_bytes(other_file.read_bytes())
    again = ft.shared_table(loss.features, images, 16, tmp_path)
    assert torch.equal(again.lookup(images[:16])[1], loss.features(images[:16])[1])
    (tmp_path / f"{key}.pt").write_bytes(b"truncated")
    assert torch.equal(ft.shared_table(loss.features, images, 16, tmp_path).features[0],
                       ft.FeatureTable.build(loss.features, images, 16).features[0])


def test_a_fit_with_the_shared_table_has_the_metrics_of_one_without_it(tiny, tmp_path):
    config = tiny(loss={"neural": "vgg16_hed", "lam": 1.0}, optim={"max_steps": 12})
    config["data"]["n_train"] = 64
    plain = fit(from_dict({**config, "out_dir": config["out_dir"] + "-plain"}))
    results = []
    for copy in range(2):  # the second run maps the first's table
        run_config = from_dict({**config, "out_dir": config["out_dir"] + f"-shared{copy}"})
        loss = target_tabled_loss(run_config, directory=tmp_path / "tables")
        results.append(fit(run_config, neural_loss=loss))
        assert loss.features.answered == 12
    assert len(list((tmp_path / "tables").glob("*.pt"))) == 1
    for metrics in (plain, *results):
        for key in ("train_seconds_this_process", "config"):
            metrics.pop(key)
    assert json.dumps(plain, sort_keys=True) == json.dumps(results[0], sort_keys=True) == json.dumps(
        results[1], sort_keys=True)


def test_a_sweep_gives_the_shared_table_to_its_vgg16_runs_only(tiny, tmp_path, monkeypatch):
    """`sweep_neural_loss` is the sweep's rule (fit_quietly, and the benchmarks that train as it does):
    a VGG16 (HED) run gets the loss with the shared table, under the sweep's table directory unless told
    another; a pixel or PatchGAN run builds its own loss (None)."""
    from rd_train.pipeline.sweep import TABLES_ENV, sweep_neural_loss

    monkeypatch.setenv(TABLES_ENV, str(tmp_path / "sweep-tables"))
    config = tiny(loss={"neural": "vgg16_hed", "lam": 1.0})
    config["data"]["n_train"] = 64
    loss = sweep_neural_loss(from_dict(config))
    assert isinstance(loss, VGG16FeatureLoss) and isinstance(loss.features, TabledFeatures)
    assert len(list((tmp_path / "sweep-tables").glob("*.pt"))) == 1
    assert isinstance(sweep_neural_loss(from_dict(config), tmp_path / "given").features, TabledFeatures)
    assert len(list((tmp_path / "given").glob("*.pt"))) == 1
    for loss_section in ({}, {"neural": "patchgan", "lam": 1.0}):
        assert sweep_neural_loss(from_dict(tiny(loss=loss_section)), tmp_path / "never") is None
    assert not (tmp_path / "never").exists()
