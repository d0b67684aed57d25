from pathlib import Path

import pytest
import torch
import yaml
from rd_train.cli import main
from rd_train.config import DataConfig
from rd_train.pipeline.dvc_pin import PinError, check_pin, read_pin, write_pin
from rd_train.training.data import ImageDataModule, dataset_md5, save_embedded

SMALL = ["--set", "data.image_size=8", "--set", "data.n_train=16", "--set", "data.n_val=4"]


@pytest.fixture
def rebuilt(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_embedded("data/rebuilt/embedded", DataConfig(image_size=8, n_train=16, n_val=4))
    return "data/rebuilt/embedded"


def test_pin_records_the_directory_hash_as_dependency_and_output(rebuilt):
    built = write_pin(rebuilt, "data.dvc")
    content = yaml.safe_load(Path("data.dvc").read_text())
    assert built == dataset_md5(rebuilt)
    assert [d["path"] for d in content["deps"]] == ["data/rebuilt/embedded"]
    assert [o["path"] for o in content["outs"]] == ["data/embedded"]
    assert content["deps"][0]["md5"] == content["outs"][0]["md5"] == built
    assert content["outs"][0]["nfiles"] == 3  # train.pt, val.pt, meta.json
    assert read_pin("data.dvc") == ("data/rebuilt/embedded", "data/embedded", built)
    assert check_pin(rebuilt, "data.dvc") == built


def test_check_rejects_other_bytes_and_says_how_to_repin(rebuilt):
    write_pin(rebuilt, "data.dvc")
    save_embedded(rebuilt, DataConfig(image_size=8, n_train=16, n_val=4, seed=1))  # other crops
    with pytest.raises(PinError, match=r"but data.dvc pins .*--pin data.dvc"):
        check_pin(rebuilt, "data.dvc")


def test_check_rejects_a_pin_for_another_directory(rebuilt):
    write_pin(rebuilt, "data.dvc")
    save_embedded("elsewhere", DataConfig(image_size=8, n_train=16, n_val=4))
    with pytest.raises(PinError, match="imports 'data/rebuilt/embedded'"):
        check_pin("elsewhere", "data.dvc")


def test_missing_or_foreign_dvc_files_are_named(tmp_path):
    with pytest.raises(PinError, match=r"absent\.dvc is missing"):
        read_pin(tmp_path / "absent.dvc")
    added = tmp_path / "added.dvc"  # what `dvc add` writes: no dependency
    added.write_text("outs:\n- md5: abc.dir\n  path: data\n")
    with pytest.raises(PinError, match="one dependency"):
        read_pin(added)


def test_prepare_cli_checks_and_pins(rebuilt, capsys):
    assert main(["prepare", "--out", rebuilt, *SMALL, "--pin", "data.dvc"]) == 0
    assert main(["prepare", "--out", rebuilt, *SMALL, "--check", "data.dvc"]) == 0
    assert main(["prepare", "--out", rebuilt, *SMALL, "--set", "data.seed=5", "--check", "data.dvc"]) == 2
    assert "but data.dvc pins" in capsys.readouterr().err


def test_runs_refuse_a_dataset_built_with_other_parameters(rebuilt):
    with pytest.raises(ValueError, match=r"holds 8 px images; data\.image_size=16 must divide it"):
        ImageDataModule(DataConfig(root=rebuilt, image_size=16, n_train=16, n_val=4)).setup()
    with pytest.raises(ValueError, match=r"data\.image_size=3 must divide it"):
        ImageDataModule(DataConfig(root=rebuilt, image_size=3, n_train=16, n_val=4)).setup()
    with pytest.raises(ValueError, match=r"built with n_train=16, but the run's data\.n_train is 32"):
        ImageDataModule(DataConfig(root=rebuilt, image_size=8, n_train=32, n_val=4)).setup()


def test_runs_read_a_built_dataset_at_a_size_that_divides_it(rebuilt):
    full = ImageDataModule(DataConfig(root=rebuilt, image_size=8, n_train=16, n_val=4))
    half = ImageDataModule(DataConfig(root=rebuilt, image_size=4, n_train=16, n_val=4))
    full.setup()
    half.setup()
    big, small = full.train_set[3], half.train_set[3]
    assert big.shape == (3, 8, 8) and small.shape == (3, 4, 4)
    # Each pixel is the (uint8-rounded) mean of a 2x2 block of the built image.
    block_means = ((big + 1) * 127.5).unfold(1, 2, 2).unfold(2, 2, 2).mean(dim=(-1, -2))
    torch.testing.assert_close((small + 1) * 127.5, block_means.round(), atol=1e-4, rtol=0)
