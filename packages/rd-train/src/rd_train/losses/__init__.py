"""Reconstruction terms: pixel SSE and the neural families (perceptual, adversarial)."""

from rd_train.losses.pixel import pixel_sse

__all__ = ["pixel_sse"]
