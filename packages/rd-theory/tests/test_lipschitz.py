import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from rd_theory.lipschitz import (
    conv2d_operator_norm,
    jacobian_lower_bound,
    lipschitz_upper_bound,
    pair_lower_bound,
)
from rd_theory.networks import nlayer_discriminator, vgg_style_features
from torch import nn


def dense_norm(module: nn.Module, shape) -> float:
    """Exact ℓ2 norm of a linear module on ``shape`` from its full Jacobian matrix."""
    x = torch.zeros((1, *shape), dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda z: module(z).flatten(), x).reshape(-1, x.numel())
    return float(torch.linalg.matrix_norm(jac, ord=2))


@given(
    c_in=st.integers(1, 3), c_out=st.integers(1, 3), k=st.integers(1, 4),
    stride=st.integers(1, 2), pad=st.integers(0, 2), size=st.integers(4, 7), seed=st.integers(0, 99),
)
def test_fft_bound_is_certified_and_tight_for_stride_one(c_in, c_out, k, stride, pad, size, seed):
    torch.manual_seed(seed)
    conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad, bias=False).double()
    exact = dense_norm(conv, (c_in, size, size))
    bound = conv2d_operator_norm(conv, (c_in, size, size))
    assert exact <= bound * (1 + 1e-10)
    if stride == 1:
        # Zero padding loses a boundary effect only: the certified bound is never loose by 2x,
        # so a check against half the bound would fail.
        assert exact > bound / 2


def test_product_bound_dominates_sampled_lower_bounds():
    torch.manual_seed(0)
    for net in (vgg_style_features(stage_channels=(8, 16)),
                nlayer_discriminator(base_channels=8, n_layers=2, spectral_norm=True, norm="none")):
        net.eval()
        shape = (3, 16, 16)
        bound = lipschitz_upper_bound(net, shape)
        x = torch.rand((32, *shape)) * 2 - 1
        y = (x + 0.01 * torch.randn_like(x)).clamp(-1, 1)
        lower = max(jacobian_lower_bound(net, x[:2]), pair_lower_bound(net, x, y))
        assert 0 < lower <= bound.upper
        for layer in bound.layers:
            if layer.power_estimate is not None:
                assert layer.power_estimate <= layer.upper * (1 + 1e-6)


def test_single_linear_layer_is_exact():
    torch.manual_seed(1)
    lin = nn.Linear(5, 4)
    bound = lipschitz_upper_bound(nn.Sequential(lin).eval(), (5,))
    assert bound.upper == pytest.approx(float(torch.linalg.matrix_norm(lin.weight.double(), ord=2)))


def test_pooling_and_activation_rules():
    seq = nn.Sequential(nn.MaxPool2d(3, stride=2), nn.AvgPool2d(2), nn.LeakyReLU(0.2), nn.Sigmoid()).eval()
    bound = lipschitz_upper_bound(seq, (1, 9, 9))
    assert [layer.upper for layer in bound.layers] == pytest.approx([2.0, 0.5, 1.0, 0.25])
    # Max pool's rule is attained: one input shared by 4 windows moves 4 outputs by the same amount.
    x = torch.zeros(1, 1, 9, 9)
    y = x.clone()
    y[0, 0, 2, 2] = 1.0
    pool = nn.MaxPool2d(3, stride=2)
    assert float((pool(y) - pool(x)).norm()) == pytest.approx(2.0)


def test_errors_are_actionable():
    with pytest.raises(ValueError, match=r"model\.eval"):
        lipschitz_upper_bound(nn.Sequential(nn.BatchNorm2d(3)), (3, 4, 4))
    with pytest.raises(ValueError, match="no Lipschitz rule"):
        lipschitz_upper_bound(nn.Sequential(nn.Softmax(dim=1)).eval(), (3,))
    assert math.isfinite(lipschitz_upper_bound(nn.Sequential(nn.GELU()).eval(), (3,)).upper)
