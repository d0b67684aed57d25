"""Hand-made run records of known answer for protocol v3's tests (claims, report): a VGG16 (HED) family
that falls with λ in every cell, a PatchGAN family that is noise, the drop growing with the target."""

import math

import numpy as np

LAMS = [0.0, 0.1, 0.5, 1.0, 2.0, 5.0]
SEEDS = [0, 1, 2]


def _record(sweep, family, lam, seed, value, *, beta=None, target=None, quantity="kl", architecture="vector"):
    path = f"{sweep}/{family}/{family}_lam{lam:g}_{beta or target:g}_seed{seed}"
    identity = {"sweep": sweep, "family": family, "architecture": architecture, "lam": lam, "beta": beta,
                "target": target, "seed": seed, "steps": 2000 if sweep == "length" else 1000}
    return {"path": path, "identity": identity, "metrics": {quantity: value}}


def _design(falling_long=True, growing=True, rng_seed=0):
    """VGG16 (HED) falls with λ in every cell; PatchGAN is noise. The VGG drop grows with the target."""
    rng = np.random.default_rng(rng_seed)
    records = []
    for seed in SEEDS:
        level = 1.0 + 0.2 * seed
        for sweep, key, keys, quantity in (("fixed", "beta", [0.016, 0.256], "kl"),
                                           ("geco", "target", [5.0, 10.0, 20.0], "anisotropy"),
                                           ("length", "target", [10.0], "anisotropy")):
            for k in keys:
                slope = (0.02 * k if growing else 0.1) if sweep != "fixed" else 0.1
                if sweep == "length" and not falling_long:
                    slope = -slope
                for lam in LAMS:
                    arms = [("pixel", 0.0)] if lam == 0 else [("perceptual", lam), ("adversarial", lam)]
                    for family, lam_value in arms:
                        value = level * math.exp(-slope * LAMS.index(lam))
                        if family == "adversarial":
                            value = level * (1 + 0.3 * rng.normal())
                        records.append(_record(sweep, family, lam_value, seed, abs(value),
                                               **{key: k}, quantity=quantity))
    return records
