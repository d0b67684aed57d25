"""The per-sample objective (module.py): its parameter gradient does not depend on how the batch is
formed, duplicated, or split across DDP workers; and a training step reads nothing back to the host
except on logging steps."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rd_train.training.module import VAEModule

SCRIPT = Path(__file__).parent / "scripts" / "ddp_step.py"


class PerSampleL1(torch.nn.Module):
    def forward(self, x, x_hat):
        return (x_hat - x).abs().flatten(1).mean(1).mean()


def spatial_config(tiny):
    return tiny(
        model={
            "kind": "spatial",
            "block_out_channels": [8, 16],
            "norm_num_groups": 4,
            "latent_channels": 2,
            "layers_per_block": 1,
            "mid_block_add_attention": False,
        },
        loss={"neural": "lpips", "lam": 2.0},
        rate={"beta": 0.7},
    )


def parameter_gradient(module, x, flip, eps, objective="per-sample"):
    """The parameter gradient of the module's surrogate, or of the old batch-sum objective
    Σ_b <x̂_b, G_b> + β mean KL (= B (L − β mean KL) + β mean KL, from the same forward pass)."""
    module.draw_noise = lambda batch, step: (flip, eps)
    module.zero_grad()
    out = module.objective(x, 0)
    surrogate = out.surrogate
    if objective == "old":
        mean_kl = out.beta * out.kl.mean()
        surrogate = x.shape[0] * (surrogate - mean_kl) + mean_kl
    surrogate.backward()
    return torch.cat([p.grad.flatten() for p in module.model.parameters()])


def single_and_doubled(tiny, objective):
    """In float64, where the identity holds to rounding (~1e-12 relative), not at fp32's 1e-7 whose
    sums depend on the CPU's kernels."""
    torch.manual_seed(0)
    first = VAEModule(spatial_config(tiny), neural_loss=PerSampleL1()).double()
    second = VAEModule(spatial_config(tiny), neural_loss=PerSampleL1()).double()
    second.load_state_dict(first.state_dict())
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(4, 3, 16, 16, generator=g, dtype=torch.float64) * 2 - 1)
    flip = torch.rand(4, generator=g) < 0.5
    eps = torch.randn(4, *first.model.latent_shape, generator=g, dtype=torch.float64)
    single = parameter_gradient(first, x, flip, eps, objective)
    doubled = parameter_gradient(second, torch.cat([x, x]), torch.cat([flip, flip]), torch.cat([eps, eps]),
                                 objective)
    assert single.dtype == torch.float64
    return single, doubled


def relative_difference(a, b):
    return float((a - b).norm() / b.norm())


def test_duplicating_the_batch_leaves_the_parameter_gradient_unchanged(tiny):
    """[x, x] with the same noise: each sample's balanced gradient and KL are unchanged, and the batch
    mean of per-sample gradients is the same."""
    single, doubled = single_and_doubled(tiny, "per-sample")
    assert single.norm() > 0
    assert relative_difference(doubled, single) < 1e-9
    torch.testing.assert_close(doubled, single, rtol=1e-9, atol=1e-9 * float(single.abs().max()))


def test_the_duplication_check_fails_under_the_old_batch_sum_objective(tiny):
    """What the test above guards against: under Σ_b <x̂_b, G_b> + β mean KL the reconstruction part
    doubles with the batch (the effective β halves), far outside the tolerance."""
    single, doubled = single_and_doubled(tiny, "old")
    assert relative_difference(doubled, single) > 0.1


def test_two_ddp_workers_on_halves_match_one_process_on_the_batch(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DDP_TEST_PORT": str(29500 + os.getpid() % 400)}
    for mode in ("single", "ddp"):
        done = subprocess.run(
            [sys.executable, str(SCRIPT), mode, str(tmp_path / f"{mode}.pt")],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    single = torch.load(tmp_path / "single.pt", weights_only=True)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    assert single.keys() == ddp.keys()
    for name in single:  # float64 gradients (the script): tolerances at float64 rounding of the scale
        assert single[name].dtype == torch.float64
        scale = float(single[name].abs().max())
        torch.testing.assert_close(ddp[name], single[name], rtol=1e-9, atol=1e-9 * scale, msg=name)


@pytest.mark.parametrize("family", ["pixel", "patchgan"])
def test_training_steps_read_nothing_back_except_when_logging(tiny, family):
    """From batch start to batch end (Lightning's own per-batch work included), only logging steps
    (every log_every_n_steps, and the last) read device values on the host."""
    import lightning as L
    from rd_kernels.testing import host_syncs
    from rd_train import from_dict
    from rd_train.training.run import fit

    class Watch(L.Callback):
        def __init__(self):
            self.reads, self._context = {}, None

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self._context = host_syncs()
            self._found = self._context.__enter__()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self._context.__exit__(None, None, None)
            self.reads[module.step_count - 1] = list(self._found)

    loss = (
        {} if family == "pixel" else {"neural": "patchgan", "lam": 1.0, "disc_channels": 8, "disc_layers": 1}
    )
    config = from_dict({**tiny(optim={"max_steps": 12}, loss=loss), "log_every_n_steps": 5})
    watch = Watch()
    fit(config, callbacks=[watch])
    logging_steps = {4, 9, 11}  # steps 5, 10 and the last (12th), counted from 0
    assert set(watch.reads) == set(range(12))
    for step, reads in watch.reads.items():
        if step not in logging_steps:
            assert reads == [], (step, reads)
    assert any(watch.reads[s] for s in logging_steps)  # the check can see reads where there are some


def test_a_plain_loop_over_train_step_trains_what_fit_trains(tiny):
    """`VAEModule.train_step` is the whole step Lightning's `training_step` takes, so the bare loop that
    benchmarks/loop_overhead.py times against Lightning is the same step: driven by a plain loop from
    the same seed, it ends with `fit`'s weights bit for bit (PatchGAN: both optimisers and schedules)."""
    import lightning as L
    from rd_train import from_dict
    from rd_train.training.run import data_module, fit

    steps = 6
    loss = {"neural": "patchgan", "lam": 1.0, "disc_channels": 8, "disc_layers": 1}
    config = from_dict({**tiny(optim={"max_steps": steps}, loss=loss), "precision": "32-true"})
    fit(config)
    fitted = torch.load(Path(config.out_dir) / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]

    L.seed_everything(config.seed, workers=True, verbose=False)  # as fit seeds before it builds anything
    data = data_module(config)
    module = VAEModule(config.to_dict())
    module.manual_backward = lambda loss: loss.backward()
    data.setup("fit")
    optimizers, schedulers = module.configure_optimizers()
    for batch, _ in zip(data.train_dataloader(), range(steps), strict=False):
        module.train_step(batch, optimizers, schedulers)
    assert module.step_count == steps
    parameters = dict(module.named_parameters())
    assert any(name.startswith("neural.") for name in parameters)  # the discriminator is compared too
    for name, value in parameters.items():
        assert torch.equal(value.detach(), fitted[name]), name
