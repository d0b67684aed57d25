"""`rd-train inspect` on a tiny AutoencoderKL saved with save_pretrained and a handful of images: its
numbers are the model's `encode(...).latent_dist` computed directly; two autoencoders in one call; a run
directory of this project; every user mistake is one line and exit 2. The command runs through its entry
point, `rd_train.cli.main`, in this process (cli_in_process.py)."""

import json
import math

import numpy as np
import pytest
import torch
from cli_in_process import rd_train
from PIL import Image

SIZE = 16


def tiny_vae(seed: int):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
                         layers_per_block=1, latent_channels=2, norm_num_groups=4, sample_size=SIZE,
                         mid_block_add_attention=False).eval()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect")
    for seed in (0, 1):
        tiny_vae(seed).save_pretrained(root / f"vae{seed}")
    images = root / "images" / "nested"
    images.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for i in range(5):  # non-square, larger than SIZE: cropped and resized
        pixels = (torch.rand(22, 28 + i, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(images / f"img{i}.png")
    (root / "images" / "notes.txt").write_text("not an image")
    return root


def direct_images(folder):
    """The images as the README says inspect reads them, written out independently."""
    out = []
    for path in sorted(folder.rglob("*.png")):
        image = Image.open(path).convert("RGB")
        side = min(image.size)
        left, top = (image.size[0] - side) // 2, (image.size[1] - side) // 2
        square = image.crop((left, top, left + side, top + side))
        image = square.resize((SIZE, SIZE), Image.Resampling.BICUBIC)
        out.append(torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1))
    return torch.stack(out) / 127.5 - 1


def test_every_number_is_the_latent_dist_computed_directly(workspace):
    from diffusers import AutoencoderKL
    from rd_train.inspection import Options, inspect_autoencoders

    out = workspace / "out-direct"
    options = Options(device="cpu", precision="32-true", weight_images=2)
    results = inspect_autoencoders([workspace / "vae0"], str(workspace / "images"), out, SIZE, None, options)
    r = results["vae0"]
    vae = AutoencoderKL.from_pretrained(workspace / "vae0", local_files_only=True).eval()
    x = direct_images(workspace / "images")
    with torch.no_grad():
        dist = vae.encode(x).latent_dist
    mean, logvar = dist.mean.double(), dist.logvar.double()
    var = logvar.exp()
    kl = 0.5 * (mean**2 + var - 1 - logvar).sum(dim=(1, 2, 3))
    assert r["images"] == 5 and r["latent_shape"] == [2, SIZE // 2, SIZE // 2]
    assert r["kl_nats_per_image"] == pytest.approx(kl.tolist(), rel=1e-5)
    assert r["kl_nats"] == pytest.approx(float(kl.mean()), rel=1e-5)
    assert r["kl_bits_per_pixel"] == pytest.approx(float(kl.mean()) / math.log(2) / SIZE**2, rel=1e-5)
    assert r["std_per_channel"] == pytest.approx(dist.std.double().mean(dim=(0, 2, 3)).tolist(), rel=1e-5)
    assert r["anisotropy"] == pytest.approx(float(logvar.flatten(1).var(1, unbiased=False).mean()), rel=1e-4)
    across = float(logvar.var(1, unbiased=False).mean())
    assert r["anisotropy_across_channels"] == pytest.approx(across, rel=1e-4)
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z = mean + var.sqrt() * noise
    assert r["aggregate"]["scaling_factor"] == pytest.approx(float(1 / z.flatten().std()), rel=1e-5)
    assert r["aggregate"]["latents_mean"] == pytest.approx(z.mean(dim=(0, 2, 3)).tolist(), rel=1e-4, abs=1e-7)
    latents_std = z.std(dim=(0, 2, 3), unbiased=False).tolist()
    assert r["aggregate"]["latents_std"] == pytest.approx(latents_std, rel=1e-5)
    assert len(r["effective_weights"]["pixel_sse"]) == 2 and min(r["effective_weights"]["pixel_sse"]) > 0
    saved = json.loads((out / "vae0" / "inspect.json").read_text())
    assert saved["kl_nats"] == r["kl_nats"] and saved["kind"] == "diffusers"
    report = (out / "vae0" / "report.md").read_text()
    assert f"{r['kl_nats']:.2f}" in report and f"{r['aggregate']['scaling_factor']:.5f}" in report
    for figure in ("vae0/std_maps.png", "std_profiles.png", "spectra.png"):
        assert (out / figure).stat().st_size > 1000


def test_two_autoencoders_in_one_call_on_the_same_images(workspace):
    out = workspace / "out-two"
    done = rd_train("inspect", workspace / "vae0", workspace / "vae1", "--images", workspace / "images",
                    "--size", SIZE, "--out", out, "--device", "cpu", "--precision", "32-true",
                    "--weight-images", "1", cwd=workspace)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (out / "comparison.md").read_text()
    assert "| vae0 |" in table and "| vae1 |" in table and "5 images" in table
    first = json.loads((out / "vae0" / "inspect.json").read_text())
    second = json.loads((out / "vae1" / "inspect.json").read_text())
    assert first["kl_nats"] != second["kl_nats"]  # different weights, the same images
    assert "vae0: KL" in done.stdout and "vae1: KL" in done.stdout


def test_the_command_measures_exactly_by_default_and_bf16_would_not(workspace):
    """No --precision: the command's KL is latent_dist's at a tolerance that bf16 forward passes miss."""
    from diffusers import AutoencoderKL
    from rd_train.inspection import Options, inspect_autoencoders

    out = workspace / "out-default"
    done = rd_train("inspect", workspace / "vae0", "--images", workspace / "images", "--size", SIZE,
                    "--out", out, "--device", "cpu", "--weight-images", "0", cwd=workspace)
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads((out / "vae0" / "inspect.json").read_text())["kl_nats"]
    vae = AutoencoderKL.from_pretrained(workspace / "vae0", local_files_only=True).eval()
    with torch.no_grad():
        dist = vae.encode(direct_images(workspace / "images")).latent_dist
    mean, logvar = dist.mean.double(), dist.logvar.double()
    exact = float((0.5 * (mean**2 + logvar.exp() - 1 - logvar)).sum(dim=(1, 2, 3)).mean())
    assert measured == pytest.approx(exact, rel=1e-5)
    bf16 = inspect_autoencoders([workspace / "vae0"], str(workspace / "images"), workspace / "out-bf16",
                                SIZE, None, Options(device="cpu", precision="bf16-mixed", weight_images=0))
    assert bf16["vae0"]["kl_nats"] != pytest.approx(exact, rel=1e-5)
    # The API's default is exact too, not `auto` (bf16 on a CPU with avx512_bf16, fp32 elsewhere).
    assert Options().precision == "32-true"


def test_a_run_directory_of_this_project(tmp_path, tiny):
    """A run is measured with the weights its own metrics were (the EMA, BatchNorm recalibrated on its
    training images): its KL equals the posterior of that model computed here, not of the raw one."""
    from rd_train import from_dict
    from rd_train.inspection import Options, inspect_autoencoders, load_images
    from rd_train.training.run import fit, load_trained

    config = from_dict(tiny(optim={"ema_decay": 0.9}))
    fit(config)
    results = inspect_autoencoders([config.out_dir], "embedded", tmp_path / "out", 16, 16,
                                   Options(device="cpu", precision="32-true", weight_images=2))
    r = results["run"]
    assert r["latent_shape"] == [8, 1, 1] and r["images"] == 16
    assert len(r["effective_weights"]["pixel_sse"]) == 8
    images, _ = load_images("embedded", 16, 16)

    def kl_of(module) -> float:
        module.eval()
        with torch.no_grad():
            mu, logvar = (t.double() for t in module.model.encode(images))
        posterior = torch.distributions.Normal(mu, (0.5 * logvar).exp())
        prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
        return float(torch.distributions.kl_divergence(posterior, prior).sum(dim=1).mean())

    assert r["kl_nats"] == pytest.approx(kl_of(load_trained(config.out_dir).module), rel=1e-5)
    raw = load_trained(config.out_dir, evaluated=False).module  # the trained weights, no average
    assert r["kl_nats"] != pytest.approx(kl_of(raw), rel=1e-5)


@pytest.mark.parametrize("case", ["not-a-directory", "no-config", "not-autoencoderkl", "no-weights",
                                  "no-readable-image", "too-small", "images-not-a-directory"])
def test_each_user_mistake_is_one_line_and_exit_2(workspace, tmp_path, case):
    vae, images = workspace / "vae0", workspace / "images"
    if case == "not-a-directory":
        (tmp_path / "file").write_text("x")
        vae, expected = tmp_path / "file", "not a directory"
    elif case == "no-config":
        (tmp_path / "empty").mkdir()
        vae, expected = tmp_path / "empty", "no config.json"
    elif case == "not-autoencoderkl":
        (tmp_path / "unet").mkdir()
        (tmp_path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
        vae, expected = tmp_path / "unet", "not 'AutoencoderKL'"
    elif case == "no-weights":
        (tmp_path / "bare").mkdir()
        (tmp_path / "bare" / "config.json").write_text((vae / "config.json").read_text())
        vae, expected = tmp_path / "bare", "no weights"
    elif case == "no-readable-image":
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "broken.png").write_bytes(b"not a png")
        images, expected = tmp_path / "bad", "could be read"
    elif case == "too-small":
        (tmp_path / "small").mkdir()
        Image.new("RGB", (10, 12)).save(tmp_path / "small" / "tiny.png")
        images, expected = tmp_path / "small", "smaller than --size 16"
    else:
        images, expected = tmp_path / "nowhere", "not a directory"
    done = rd_train("inspect", vae, "--images", images, "--size", SIZE, "--out", tmp_path / "out",
                    cwd=tmp_path)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.startswith("rd-train: ")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert expected in lines[0], lines[0]
