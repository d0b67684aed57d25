"""Fused kernels for VAE training steps: Gaussian KL + reparameterisation + posterior statistics,
and the EnCodec gradient balancer. Triton on CUDA, PyTorch reference on CPU."""

from rd_kernels.balancer import Balancer
from rd_kernels.gaussian_kl import PosteriorStats, gaussian_kl, sample_and_kl

__all__ = ["Balancer", "PosteriorStats", "gaussian_kl", "sample_and_kl"]
