import pytest
import torch
from rd_theory import neural
from rd_theory.lipschitz import conv2d_operator_norm
from rd_theory.networks import nlayer_discriminator, vgg_style_features
from torch import nn

SHAPE = (3, 16, 16)


def pairs(n=48, seed=0):
    return neural.image_pairs(n, SHAPE, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("spectral", [False, True])
def test_feature_matching_and_hinge_are_dominated(spectral):
    torch.manual_seed(0)
    disc = nlayer_discriminator(base_channels=8, n_layers=2, spectral_norm=spectral,
                                norm="none" if spectral else "batch").eval()
    x, y = pairs()
    weights = [1.0, 0.5, 0.25]
    with torch.no_grad():
        sse = neural.pixel_sse(x, y)
        fm = neural.feature_matching(disc, weights, x, y)
        cert = neural.feature_matching_domination(disc, weights, SHAPE)
        assert torch.all(fm <= cert.a * sse)
        hinge = neural.hinge_certificate(disc, SHAPE)
        d = neural.shifted_hinge(disc, hinge.shift, x, y)
        assert torch.all(d >= 0)
        for a in (0.1, 10.0):
            dom = hinge.domination(a)
            assert torch.all(d <= dom.a * sse + dom.b)


def test_feature_mse_constant_is_tight_for_a_linear_feature_map():
    """For φ = a single stride-1 conv, the sup of d_φ / SSE is L² (nearly, up to padding): the
    certificate holds and half of it fails on the top singular direction."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    phi = nn.Sequential(conv).eval()
    cert = neural.feature_mse_domination(phi, SHAPE)
    assert cert.a == pytest.approx(conv2d_operator_norm(conv, SHAPE) ** 2)
    v = torch.randn((1, *SHAPE))
    for _ in range(100):  # power iteration for the worst direction
        v = v / v.norm()
        v = nn.functional.conv_transpose2d(conv(v), conv.weight, padding=1).detach()
    v = 0.01 * v / v.norm()
    x = torch.zeros((1, *SHAPE))
    with torch.no_grad():
        ratio = float(neural.feature_mse(phi, x, v) / neural.pixel_sse(x, v))
    assert ratio <= cert.a * (1 + 1e-6)
    assert ratio > cert.a / 2


def test_mixture_certificate():
    torch.manual_seed(1)
    phi = vgg_style_features(stage_channels=(8,)).eval()
    cert = neural.feature_mse_domination(phi, SHAPE)
    x, y = pairs(seed=3)
    with torch.no_grad():
        sse, feat = neural.pixel_sse(x, y), neural.feature_mse(phi, x, y)
    for lam in (0.0, 0.5, 5.0):
        mix = neural.mixture_domination([1.0, lam], [neural.PIXEL_SSE, cert])
        assert mix.a == pytest.approx(1 + lam * cert.a)
        assert torch.all(sse + lam * feat <= mix.a * sse + mix.b)
    with pytest.raises(ValueError, match=">= 0"):
        neural.mixture_domination([1.0, -1.0], [neural.PIXEL_SSE, cert])


def test_patchgan_shapes():
    disc = nlayer_discriminator(base_channels=8, n_layers=3)
    logits = disc(torch.zeros(2, 3, 64, 64))
    assert logits.shape == (2, 1, 6, 6)  # pix2pix's 70x70-receptive-field grid at 64 px
    with pytest.raises(ValueError, match="norm"):
        nlayer_discriminator(norm="instance")
