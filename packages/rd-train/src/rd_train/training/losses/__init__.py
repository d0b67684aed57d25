"""Reconstruction terms: pixel SSE and the neural families (perceptual, adversarial)."""

from __future__ import annotations

from torch import nn

from rd_train.config import TrainConfig
from rd_train.training.losses.pixel import pixel_sse
from rd_train.training.losses.vgg16 import VGG16FeatureLoss, vgg16_hed_features

__all__ = ["VGG16FeatureLoss", "build_neural_loss", "pixel_sse", "vgg16_hed_features"]


def build_neural_loss(config: TrainConfig) -> nn.Module | None:
    """The neural reconstruction term ``config.loss`` names, or None (pixel SSE alone, or λ = 0).
    Pretrained backbones load from local files only (each loss names the file it misses)."""
    loss = config.loss
    if loss.neural == "none" or loss.lam == 0:
        return None
    if loss.neural == "vgg16_hed":
        from rd_train.training.losses.vgg16 import stages_for

        return VGG16FeatureLoss(stages_for(loss.vgg_stages, config.data.image_size), loss.weights_path)
    if loss.neural == "lpips":
        from rd_train.training.losses.perceptual import LPIPSLoss

        return LPIPSLoss(loss.lpips_net, loss.weights_path)
    if loss.neural == "dinov2":
        from rd_train.training.losses.perceptual import DINOv2Loss

        return DINOv2Loss(loss.dinov2_model, loss.dinov2_layers, loss.weights_path)
    from rd_train.training.losses.adversarial import PatchGANLoss

    return PatchGANLoss(loss.disc_channels, loss.disc_layers, loss.disc_spectral_norm,
                        loss.feature_matching_weight)
