import pytest
import torch
import torchvision
from rd_train.config import DataConfig, ModelConfig
from rd_train.training.data import TRAIN_PHOTOS, VAL_PHOTOS, ImageDataModule, build_embedded, save_embedded
from rd_train.training.losses import pixel_sse
from rd_train.training.losses.adversarial import PatchGANLoss
from rd_train.training.losses.perceptual import DINOv2Loss, LPIPSLoss, MissingWeightsError
from rd_train.training.models import build_model


def test_embedded_dataset_is_deterministic_and_split_by_photo(tmp_path):
    a = build_embedded(TRAIN_PHOTOS, 64, 16, seed=3)
    assert torch.equal(a, build_embedded(TRAIN_PHOTOS, 64, 16, seed=3))
    assert not torch.equal(a, build_embedded(TRAIN_PHOTOS, 64, 16, seed=4))
    assert not set(TRAIN_PHOTOS) & set(VAL_PHOTOS)
    assert a.float().std() > 20  # natural images, not a constant
    config = DataConfig(n_train=64, n_val=16, image_size=16, root=str(tmp_path))
    save_embedded(tmp_path, config)
    dm = ImageDataModule(config)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (64 if config.batch_size > 64 else config.batch_size, 3, 16, 16)
    assert batch.min() >= -1.0 and batch.max() <= 1.0


def test_a_batch_is_loaded_in_a_few_ops_with_the_per_image_values(tmp_path):
    from rd_kernels.testing import DispatchLog

    config = DataConfig(n_train=96, n_val=40, image_size=16, root=str(tmp_path), batch_size=32)
    save_embedded(tmp_path, config)
    dm = ImageDataModule(config)
    dm.setup()
    for loader, images in ((dm.train_dataloader(), dm.train_set), (dm.val_dataloader(), dm.val_set)):
        batches = 0
        for batch, indices in zip(loader, loader.batch_sampler, strict=True):
            assert torch.equal(batch, torch.stack([images[i] for i in indices]))  # bit for bit
            batches += 1
        assert batches == len(loader) > 1
    loader = iter(dm.train_dataloader())
    next(loader)  # the epoch's shuffle
    with DispatchLog() as log:
        next(loader)
    # index list to tensor, gather, float, divide, subtract: not a few ops per image and a stack
    assert len(log.compute_ops()) <= 5, log.ops


@pytest.mark.parametrize("accelerator", ["cpu", "gpu"])
def test_batches_are_pinned_exactly_when_the_run_trains_on_cuda(accelerator):
    """From pageable memory a copy to the GPU may wait for the stream (see ImageDataModule): a run on
    CUDA loads into page-locked memory. On the CPU pinning would only cost a copy."""
    from rd_train import from_dict
    from rd_train.training.run import data_module

    data = data_module(from_dict({"accelerator": accelerator}))
    data.setup()
    on_cuda = accelerator == "gpu"
    assert data.train_dataloader().pin_memory is on_cuda
    assert data.val_dataloader().pin_memory is on_cuda


def test_missing_local_data_says_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="rd-train prepare"):
        ImageDataModule(DataConfig(root=str(tmp_path / "absent"))).setup()
    with pytest.raises(FileNotFoundError, match="no download is attempted"):
        ImageDataModule(DataConfig(name="celeba", root=str(tmp_path))).setup()


@pytest.mark.parametrize("kind", ["vector", "spatial"])
def test_models_share_one_interface(kind):
    model = build_model(ModelConfig(kind=kind), 32)
    mu, logvar = model.encode(torch.randn(2, 3, 32, 32))
    assert mu.shape == logvar.shape
    assert model.decode(mu).shape == (2, 3, 32, 32)
    if kind == "spatial":
        assert mu.dim() == 4  # a spatial latent grid


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


CELEBA = {"channels": [128, 256, 512, 1024], "latent_dim": 64}


def test_the_default_decoder_at_the_celeba_setting_has_the_papers_25_2m():
    """pythae's encoder layer for layer, the mirrored decoder: 25,203,075 in all (the spec's 25.2M)."""
    model = build_model(ModelConfig(**CELEBA), 64)
    encoder = _count(model.encoder) + _count(model.mu) + _count(model.logvar)
    decoder = _count(model.expand) + _count(model.decoder)
    assert (encoder, decoder, _count(model)) == (13_119_232, 12_083_843, 25_203_075)
    assert model.decode(torch.zeros(2, 64)).shape == (2, 3, 64, 64)


def test_the_pythae_decoder_is_pythaes_decoder_conv_ae_celeba():
    """Counts as pythae 0.1.2 builds Encoder_Conv_VAE_CELEBA + Decoder_Conv_AE_CELEBA, and its layers:
    a linear map to 1024 x 8 x 8, three 5x5 stride-2 transposed convs, a 5x5 stride-1 one."""
    model = build_model(ModelConfig(**CELEBA, decoder="pythae"), 64)
    encoder = _count(model.encoder) + _count(model.mu) + _count(model.logvar)
    decoder = _count(model.expand) + _count(model.decoder)
    assert (encoder, decoder, _count(model)) == (13_119_232, 21_475_331, 34_594_563)
    assert model.expand.out_features == 1024 * 8 * 8
    convs = [m for m in model.decoder if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (1024, 512, (5, 5), (2, 2)), (512, 256, (5, 5), (2, 2)), (256, 128, (5, 5), (2, 2)),
        (128, 3, (5, 5), (1, 1))]
    out = model.decode(torch.randn(2, 64) * 10)
    assert out.shape == (2, 3, 64, 64)
    assert out.abs().max() <= 1.0  # pythae's Sigmoid, moved to the [-1, 1] image range


@pytest.mark.parametrize("size", [16, 32, 48])
def test_the_pythae_decoder_returns_the_image_size_it_was_built_for(size):
    model = build_model(ModelConfig(channels=[4, 8, 8, 16], latent_dim=3, decoder="pythae"), size)
    assert model.decode(torch.randn(2, 3)).shape == (2, 3, size, size)


def test_the_pythae_decoder_needs_four_stages():
    from rd_train import from_dict
    from rd_train.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model\.decoder=pythae .* needs 4 widths"):
        from_dict({"model": {"channels": [8, 16], "decoder": "pythae"}})


def test_pixel_sse_is_a_per_image_sum():
    x = torch.zeros(2, 3, 4, 4)
    assert float(pixel_sse(x, x + 0.5)) == pytest.approx(3 * 16 * 0.25)


def test_patchgan_losses():
    loss = PatchGANLoss(channels=8, n_layers=2)
    x, x_hat = torch.rand(2, 3, 32, 32) * 2 - 1, torch.zeros(2, 3, 32, 32, requires_grad=True)
    d = loss.discriminator_loss(x, x_hat)
    assert float(d) >= 0
    g = loss.generator_loss(x, x_hat)
    g.backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    # Feature matching vanishes for a perfect reconstruction: only the score term is left.
    loss.eval()
    assert float(loss.generator_loss(x, x)) == pytest.approx(-float(loss.discriminator(x).mean()), abs=1e-6)


def test_lpips_needs_local_backbone_and_loads_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingWeightsError, match=r"vgg16-397923af\.pth.*TORCH_HOME"):
        LPIPSLoss("vgg")
    path = tmp_path / "vgg16.pth"
    torch.save(torchvision.models.vgg16().state_dict(), path)  # random weights, real file format
    loss = LPIPSLoss("vgg", weights_path=str(path))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert float(loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(x, x.flip(-1))) > 0
    state = torch.load(path, weights_only=True)
    torch.testing.assert_close(loss.model.net.slice1[0].weight, state["features.0.weight"])


def test_dinov2_distance_with_a_small_random_vit(tmp_path):
    import timm

    vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, depth=2, embed_dim=48,
                            num_heads=2, img_size=28, dynamic_img_size=True)
    loss = DINOv2Loss(layers=[0, 1], model=vit)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert float(loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(x, -x)) > 0
    with pytest.raises(MissingWeightsError, match="weights_path"):
        DINOv2Loss(weights_path=str(tmp_path / "nope.safetensors"))


def test_modules_are_registered_in_the_order_that_fixes_a_seeds_initial_weights():
    """Initial weights are drawn in registration order: the decoder option must not reorder them
    (a seed's initialisation, and so every run's metrics, stay what they were)."""
    model = build_model(ModelConfig(latent_dim=4, channels=[8, 16]), 16)
    top = [name for name, _ in model.named_children()]
    assert top == ["encoder", "mu", "logvar", "expand", "decoder"]
