"""Smoke test of refiner training on the bundled sample: steps run, checkpoints resume."""

import json

import pytest
import torch

from vossegcli.cli import app
from vossegcli.engine.refiner import Refiner, RefinerConfig, load_refiner
from support import runner


@pytest.mark.slow
def test_train_runs_checkpoints_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", "sample", "--out", str(out), "--device", "cpu", "--batch-size", "2",
            "--width", "8", "--val-frames", "4", "--crop", "128"]
    result = runner.invoke(app, args + ["--steps", "2"])
    assert result.exit_code == 0, result.output
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 2 and len(ckpt["history"]) == 2
    assert all(h["loss"] > 0 for h in ckpt["history"])
    assert (out / "cache" / "sample.pt").is_file()  # features + target models cached
    summary = json.loads((out / "summary.json").read_text())
    logged = [json.loads(line) for line in (out / "validation.jsonl").read_text().splitlines()]
    assert summary["steps"] == 2 and logged[-1]["step"] == 2
    assert summary["validation"]["J&F"] == logged[-1]["J&F"] > 0.3  # the sample's object is found
    torch.manual_seed(0)  # the trainer's seed: the refiner it started from
    start = Refiner(RefinerConfig(width=8)).state_dict()
    trained = load_refiner(out / "refiner.pt").state_dict()
    assert any(not torch.equal(start[k], trained[k]) for k in start if start[k].is_floating_point())

    result = runner.invoke(app, args + ["--steps", "3", "--resume"])
    assert result.exit_code == 0, result.output
    assert "resuming at step 2" in result.output
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 3 and len(ckpt["history"]) == 3
    refiner = load_refiner(out / "refiner.pt")
    assert refiner.config.width == 8


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["train", "--data", "sample", "--out", str(tmp_path / "none"), "--resume", "--steps", "1"])
    assert result.exit_code == 2 and "no checkpoint" in result.output


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(tmp_path):
    """Stopping at step 2 (without a learning-rate drop yet) and resuming to step 4 gives exactly the
    weights of one 4-step run: the README's training command is reproducible even when resumed."""
    common = ["train", "--data", "sample", "--device", "cpu", "--batch-size", "2", "--width", "8",
              "--val-frames", "3", "--crop", "128", "--seed", "3"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert runner.invoke(app, common + ["--out", str(straight), "--steps", "4"]).exit_code == 0
    resumed.mkdir()
    (resumed / "cache").symlink_to(straight / "cache")  # the cache is deterministic: share it
    assert runner.invoke(app, common + ["--out", str(resumed), "--steps", "2", "--lr-drop", "1"]).exit_code == 0
    result = runner.invoke(app, common + ["--out", str(resumed), "--steps", "4", "--resume"])
    assert result.exit_code == 0, result.output
    a, b = load_refiner(straight / "refiner.pt").state_dict(), load_refiner(resumed / "refiner.pt").state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_learning_rate_drops_by_ten_at_the_configured_fraction(tmp_path):
    from vossegcli.train.trainer import RefinerTrainer, TrainConfig

    trainer = RefinerTrainer(TrainConfig(steps=100, lr=1e-3, lr_drop=0.8, data="sample", refiner_width=8),
                             tmp_path, torch.device("cpu"))
    assert trainer.learning_rate(0) == trainer.learning_rate(79) == 1e-3
    assert abs(trainer.learning_rate(80) - 1e-4) < 1e-12 and abs(trainer.learning_rate(99) - 1e-4) < 1e-12


def test_distractor_is_the_strongest_false_positive_away_from_the_object():
    from vossegcli.train.trainer import _distractor

    label = torch.zeros(480, 854, dtype=torch.uint8)
    label[200:260, 400:460] = 1
    scores = torch.zeros(1, 30, 54)
    scores[0, 13:16, 25:29] = 1.0  # on the object
    scores[0, 12, 24] = 0.9  # next to it: a border, not a distractor
    scores[0, 5, 3] = 0.6  # far away
    assert _distractor(scores, label, 1) == (88, 54)  # centre of cell (5, 3) in pixels
    scores[0, 5, 3] = 0.1
    assert _distractor(scores, label, 1) is None  # nothing strong enough away from the object


def test_crop_windows_follow_the_requested_centres():
    import random

    from vossegcli.train.trainer import _crop_window

    label = torch.zeros(480, 854, dtype=torch.uint8)
    label[400:440, 700:760] = 1
    rng = random.Random(0)
    for _ in range(20):
        y, x, side = _crop_window(label, 1, 256, rng, object_share=1.0)
        assert side == 256 and y % 32 == 0 and x % 32 == 0
        assert y + side <= 480 and x + side <= 854
        assert label[y:y + side, x:x + side].any()  # centred on the object, clipped to the frame
    y, x, _ = _crop_window(label, 1, 256, rng, object_share=0.0, distractor=(60, 60), distractor_share=1.0)
    assert (y, x) == (0, 0)


@pytest.mark.slow
def test_train_with_a_region_loss_records_it_and_refuses_an_unknown_one(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", "sample", "--out", str(out), "--device", "cpu", "--batch-size", "2",
            "--width", "8", "--val-frames", "4", "--crop", "128", "--steps", "1"]
    result = runner.invoke(app, args + ["--loss", "bce+lovasz"])
    assert result.exit_code == 0, result.output
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["config"]["loss"] == "bce+lovasz" and ckpt["history"][0]["loss"] > 0
    result = runner.invoke(app, args + ["--loss", "focal", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--loss focal" in result.output


@pytest.mark.slow
def test_train_from_the_shipped_refiner_starts_from_its_weights_and_refuses_another_width(tmp_path):
    """--init default: training starts from the shipped refiner (one step at learning rate 0 keeps
    its weights); a width other than the file's is refused in one line that says which width to use."""
    from vossegcli.engine.weights import shipped_path

    shipped = load_refiner(shipped_path("refiner"))
    out = tmp_path / "run"
    args = ["train", "--data", "sample", "--out", str(out), "--device", "cpu", "--val-frames", "2", "--crop", "128",
            "--init", "default", "--steps", "1", "--lr", "0", "--batch-size", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    a, b = dict(shipped.named_parameters()), dict(load_refiner(out / "refiner.pt").named_parameters())
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # (BatchNorm statistics move)
    result = runner.invoke(app, args[:4] + [str(tmp_path / "w8"), "--width", "8", "--init", "default", "--steps", "1"])
    assert result.exit_code == 2 and f"--width {shipped.config.width}" in result.output, result.output


def _tiny_clip():
    import numpy as np

    from vossegcli.datasets.clips import Clip

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for _ in range(2)]
    label = np.zeros((128, 128), np.uint8)
    label[32:96, 40:100] = 1
    for f in frames:
        f[32:96, 40:100] = (200, 40, 40)
    return Clip("tiny", frames, [label, label.copy()])


def test_training_target_models_follow_the_adapter_and_share_the_cached_features(tmp_path):
    """With an adapter, the cached target models read its 184 channels and are stored under its
    sha256 beside the shared features; without one, they read the 120 stride-16 channels."""
    from dataclasses import replace

    from vossegcli.engine.backbone import Backbone
    from vossegcli.engine.config import preset_config
    from vossegcli.engine.target_features import load_target_features
    from vossegcli.engine.weights import shipped_path, weights_file
    from vossegcli.train.trainer import FeatureCache, d_features

    path, sha = weights_file("target_features", "default")
    assert path is not None, "the shipped adapter is in weights/"
    adapter = load_target_features(path)
    engine = replace(preset_config("default", seed=0), augment=replace(preset_config("default").augment, num_samples=2))
    backbone = Backbone().eval()
    clip = _tiny_clip()
    with torch.no_grad():
        learned = FeatureCache(tmp_path, backbone, engine, torch.device("cpu"), adapter, sha).build(clip, [0], 0)
    assert (tmp_path / f"tiny.targets-{sha[:12]}.pt").is_file() and (tmp_path / "tiny.pt").is_file()
    assert learned.targets[(0, 1)][0].shape[1] == adapter.channels == 184
    x = d_features(learned.features[1], adapter, engine.feature_scale)
    assert x.shape[:2] == (1, 184)
    assert torch.equal(x[:, :120], learned.features[1]["s16"][None].float() * engine.feature_scale)

    with torch.no_grad():
        plain = FeatureCache(tmp_path, backbone, engine, torch.device("cpu")).build(clip, [0], 0)
    assert plain.targets[(0, 1)][0].shape[1] == 120
    assert all(torch.equal(a["s16"], b["s16"]) for a, b in zip(plain.features, learned.features))  # shared
    again = FeatureCache(tmp_path, backbone, engine, torch.device("cpu"), adapter, sha).build(clip, [0], 0)
    assert torch.equal(again.targets[(0, 1)][0], learned.targets[(0, 1)][0])  # read back from the cache
    assert shipped_path("target_features") == path


def test_train_with_a_missing_adapter_names_the_file(tmp_path):
    result = runner.invoke(app, ["train", "--data", "sample", "--out", str(tmp_path / "r"), "--steps", "1",
                                      "--target-features", str(tmp_path / "nope.pt")])
    assert result.exit_code == 2, result.output
    assert "nope.pt" in result.output and "--target-features" in result.output
