import pytest
import torch
from rd_train import from_dict
from rd_train.losses.learned_features import LearnedFeatureLoss, train_feature_network
from rd_train.losses.perceptual import MissingWeightsError
from rd_train.run import fit


@pytest.fixture(scope="module")
def feature_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("features") / "features.pt"
    info = train_feature_network(path, image_size=16, n_train=512, steps=60, seed=0)
    return path, info


def test_network_learns_beyond_chance_and_is_named_honestly(feature_file):
    _, info = feature_file
    assert info["heldout_accuracy"] > 2 * info["chance_accuracy"]
    assert "LPIPS" not in info["name"] and "trained on embedded data" in info["name"]


def test_distance_grows_with_noise_and_sees_blur(feature_file):
    path, _ = feature_file
    loss = LearnedFeatureLoss(str(path))
    from rd_train.data import VAL_PHOTOS, build_embedded

    x = build_embedded(VAL_PHOTOS, 32, 16, seed=5).float() / 127.5 - 1
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    distances = [float(loss(x, (x + s * noise).clamp(-1, 1))) for s in (0.0, 0.05, 0.2, 0.5)]
    assert distances[0] == pytest.approx(0.0, abs=1e-6)
    assert distances == sorted(distances) and distances[-1] > distances[1]
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert float(loss(x, blurred)) > 0


def test_training_with_learned_features(tiny, feature_file):
    path, _ = feature_file
    config = from_dict(tiny(loss={"neural": "features", "lam": 1.0, "weights_path": str(path)},
                            optim={"max_steps": 3}))
    result = fit(config)
    assert result["steps"] == 3 and result["distortion"]["neural"] > 0


def test_missing_feature_network_says_how_to_make_it(tmp_path):
    with pytest.raises(MissingWeightsError, match="rd-train train-features"):
        LearnedFeatureLoss(str(tmp_path / "absent.pt"))
