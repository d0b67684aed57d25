"""Shortcuts that save a step or a validation time and must change no number (issue 29): the gradient's
∞-norm from foreach calls, the weight average's parameter lists walked once, and BatchNorm recalibration
decoding only as far as the last BatchNorm layer. Each is compared bit for bit with what it replaced
(benchmarks/step_host_costs.py times them)."""

import copy

import pytest
import torch
from rd_train import from_dict
from rd_train.config import ModelConfig
from rd_train.training.ema import WeightAverage
from rd_train.training.models import VectorVAE
from rd_train.training.module import VAEModule, max_abs
from torch import nn


def _tensors() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=g) * scale
            for shape, scale in (((32, 3, 4, 4), 1e-3), ((32,), 5.0), ((16, 1024), 0.2), ((7,), 1e4))]


def test_max_abs_is_the_infinity_norm_get_total_norm_gives():
    tensors = _tensors()
    assert torch.equal(max_abs(tensors), torch.nn.utils.get_total_norm(tensors, norm_type=torch.inf))
    assert float(max_abs(tensors)) == max(float(t.abs().max()) for t in tensors)
    assert float(max_abs([])) == 0.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_max_abs_is_not_finite_when_one_gradient_element_is_not(bad):
    """What the step reads it for: a single non-finite element anywhere makes the value non-finite."""
    tensors = _tensors()
    tensors[2][5, 17] = bad
    assert not torch.isfinite(max_abs(tensors))


def test_the_weight_average_keeps_averaging_the_models_parameters_after_a_dtype_move():
    """The parameter lists are walked once; Module.to keeps the Parameter objects, so the average still
    follows the model after a move (it fails if an update reads stale tensors)."""
    model = nn.Linear(3, 2)
    average = WeightAverage(model, decay=0.5)
    model.double()
    average.module.double()
    with torch.no_grad():
        model.weight.fill_(2.0)
    before = average.averaged_model().weight.clone()
    average.update()
    torch.testing.assert_close(average.averaged_model().weight, 0.5 * before + 1.0)
    assert average.averaged_model().weight.dtype == torch.float64


def _recalibrated(model: VectorVAE, images: torch.Tensor, decode) -> list[torch.Tensor]:
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for batch in images.split(16):
            mu, logvar = model.encode(batch)
            decode(model)(mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g))
    return [t.clone() for m in norms for t in (m.running_mean, m.running_var, m.num_batches_tracked)]


@pytest.mark.parametrize("decoder", ["mirror", "pythae"])
def test_decoding_for_statistics_gives_every_batchnorm_what_the_whole_decoder_gives(decoder):
    """Every BatchNorm layer's statistics equal bit for bit what a full decode leaves (it fails if the
    last BatchNorm layer, or any before it, is skipped), and no layer after the last BatchNorm runs."""
    channels = [8, 16, 16, 16] if decoder == "pythae" else [8, 16]
    model = VectorVAE(ModelConfig(kind="vector", latent_dim=4, channels=channels, decoder=decoder), 16)
    images = torch.rand(48, 3, 16, 16) * 2 - 1
    full = _recalibrated(copy.deepcopy(model), images, lambda m: m.decode)
    last = max(i for i, m in enumerate(model.decoder) if isinstance(m, nn.modules.batchnorm._BatchNorm))
    after = list(model.decoder)[last + 1:]
    assert after, "the decoders end with layers that hold no statistics"
    calls = []
    for layer in after:
        layer.register_forward_hook(lambda *_: calls.append(1))
    partial = _recalibrated(model, images, lambda m: m.decode_statistics)
    assert all(torch.equal(a, b) for a, b in zip(full, partial, strict=True))
    assert not calls


def test_a_validations_recalibration_is_the_full_decoders_bit_for_bit(tiny):
    """The module's recalibration (what every validation and the final metrics run first) leaves the
    evaluated model the statistics a full decode of the same batches and noise leaves."""
    module = VAEModule(from_dict(tiny(optim={"max_steps": 16, "lr": 2e-3, "ema_decay": 0.9})).to_dict())
    module.calibration_images = torch.rand(600, 3, 16, 16) * 2 - 1
    reference = copy.deepcopy(module)
    reference.evaluated_model().decode_statistics = reference.evaluated_model().decode  # the old way
    module.recalibrate_batchnorm()
    reference.recalibrate_batchnorm()
    ours, theirs = module.evaluated_model().state_dict(), reference.evaluated_model().state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert int(ours["encoder.1.num_batches_tracked"]) == 3  # 600 images in batches of 256
