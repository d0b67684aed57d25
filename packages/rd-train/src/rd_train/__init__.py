"""Train VAEs with pixel + neural losses through the EnCodec balancer and measure their latents."""

from rd_train.config import TrainConfig, from_dict, load_config

__all__ = ["TrainConfig", "from_dict", "load_config"]
