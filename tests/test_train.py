"""Smoke test of refiner training on the bundled sample: steps run, checkpoints resume."""

import json

import pytest
import torch
from typer.testing import CliRunner

from vossegcli.cli import app
from vossegcli.engine.refiner import load_refiner


@pytest.mark.slow
def test_train_runs_checkpoints_and_resumes(tmp_path):
    runner = CliRunner()
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
    assert summary["steps"] == 2 and 0 <= summary["validation"]["J&F"] <= 1

    result = runner.invoke(app, args + ["--steps", "3", "--resume"])
    assert result.exit_code == 0, result.output
    assert "resuming at step 2" in result.output
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 3 and len(ckpt["history"]) == 3
    refiner = load_refiner(out / "refiner.pt")
    assert refiner.config.width == 8


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["train", "--data", "sample", "--out", str(tmp_path / "none"), "--resume", "--steps", "1"])
    assert result.exit_code == 2 and "no checkpoint" in result.output


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(tmp_path):
    """Stopping at step 2 (without a learning-rate drop yet) and resuming to step 4 gives exactly the
    weights of one 4-step run: the README's training command is reproducible even when resumed."""
    runner = CliRunner()
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
    runner = CliRunner()
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
def test_train_with_evidence_attention_and_convex_upsampler_from_the_shipped_refiner(tmp_path):
    """Three-frame training path of the extended refiner: it starts from the shipped weights and
    saves a refiner whose config names its inputs; a wrong --evidence is refused in one line."""
    from vossegcli.engine.refiner import default_refiner_path

    runner = CliRunner()
    out = tmp_path / "run"
    args = ["train", "--data", "sample", "--out", str(out), "--device", "cpu", "--batch-size", "2",
            "--val-frames", "4", "--crop", "128", "--steps", "2", "--evidence", "gdm,dam", "--attention",
            "--upsampler", "convex"]
    if default_refiner_path() is not None:
        args += ["--init", "default"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    refiner = load_refiner(out / "refiner.pt")
    assert refiner.config.evidence == ("gdm", "dam") and refiner.config.attention
    assert refiner.config.upsampler == "convex"
    result = runner.invoke(app, ["train", "--data", "sample", "--out", str(tmp_path / "bad"), "--evidence", "flow"])
    assert result.exit_code != 0 and "unknown evidence flow" in result.output
