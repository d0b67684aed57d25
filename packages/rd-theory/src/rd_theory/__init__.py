"""Numerical verification of the rate-distortion claims of *How Neural Losses Shape VAE Latents*."""

from rd_theory.blahut_arimoto import BlahutArimotoResult, blahut_arimoto, mutual_information
from rd_theory.domination import affine_domination, check_rd_ordering
from rd_theory.rate_distortion import (
    DistortionLimits,
    RDCurve,
    distortion_limits,
    rate_at_minimum_distortion,
    rate_distortion,
    rd_curve,
)
from rd_theory.waterfill import reverse_waterfill

__all__ = [
    "BlahutArimotoResult",
    "DistortionLimits",
    "RDCurve",
    "affine_domination",
    "blahut_arimoto",
    "check_rd_ordering",
    "distortion_limits",
    "mutual_information",
    "rate_at_minimum_distortion",
    "rate_distortion",
    "rd_curve",
    "reverse_waterfill",
]
