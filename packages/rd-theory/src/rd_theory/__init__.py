"""Numerical verification of the rate-distortion claims of *How Neural Losses Shape VAE Latents*."""

from rd_theory.blahut_arimoto import BlahutArimotoResult, blahut_arimoto, mutual_information
from rd_theory.rate_distortion import (
    DistortionLimits,
    RDCurve,
    distortion_limits,
    rate_at_minimum_distortion,
    rate_distortion,
    rd_curve,
)

__all__ = [
    "BlahutArimotoResult",
    "DistortionLimits",
    "RDCurve",
    "blahut_arimoto",
    "distortion_limits",
    "mutual_information",
    "rate_at_minimum_distortion",
    "rate_distortion",
    "rd_curve",
]
