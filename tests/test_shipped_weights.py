"""The trained refiner ships with the package, is described by the manifest, and is used by default."""

import json

import pytest
import torch

from vossegcli.engine.refiner import load_refiner
from vossegcli.engine.weights import WEIGHTS_DIR, shipped_path, weights_file
from vossegcli.files import sha256_of
from vossegcli.engine.segmenter import Segmenter
from vossegcli.engine.config import SegmenterConfig
from support import runner


@pytest.fixture(scope="module")
def entry():
    return json.loads((WEIGHTS_DIR / "manifest.json").read_text())["refiner"]


def test_manifest_describes_the_shipped_refiner(entry):
    path = shipped_path("refiner")
    assert path is not None and path.name == entry["file"]
    assert sha256_of(path) == entry["sha256"]
    assert path.stat().st_size < 20 * 2**20
    for key in ("training_data", "steps", "command", "wall_time", "device", "scores", "license", "init"):
        assert entry[key], key
    assert "vosseg train" in entry["command"]
    assert entry["scores"]["real30"] > entry["scores"]["real30_before"] and entry["scores"]["val-synth"] > 0
    # the manifest's config is the file's
    config = load_refiner(path).config.as_dict()
    assert all(config[k] == v for k, v in entry["config"].items())


def test_shipped_refiner_improves_the_bundled_sample_over_the_target_models_alone():
    """Measured here, not read from the manifest: J&F on the bundled sample with the shipped
    refiner is higher than with the target models' upsampled scores alone."""
    from vossegcli.eval.metrics import boundary_measure, region_similarity
    from vossegcli.io.palette import read_label_png
    from vossegcli.io.video import open_frames
    from vossegcli.sample import sample_paths

    sample = sample_paths()
    with open_frames(sample.video) as reader:
        frames = [f.image for f in reader][:24]
    first = read_label_png(sample.mask)
    scores = {}
    for refiner in ("default", None):
        seg = Segmenter(SegmenterConfig(refiner=refiner), device="cpu")
        jf = []
        for result in seg.run(iter(frames), {0: first}):
            if result.index == 0:
                continue
            gt = read_label_png(sample.gt_dir / f"{result.index:05d}.png")
            for obj in (1, 2):
                p, g = result.labels == obj, gt == obj
                jf.append((region_similarity(p, g) + boundary_measure(p, g)) / 2)
        scores[refiner] = sum(jf) / len(jf)
    assert scores["default"] > scores[None] + 0.02, scores


def test_shipped_refiner_loads_and_is_the_default():
    refiner = load_refiner(shipped_path("refiner"))
    assert not refiner.training
    assert all(torch.isfinite(p).all() for p in refiner.parameters())
    segmenter = Segmenter(SegmenterConfig(), device="cpu")
    assert segmenter.refiner is not None  # no option needed: a fresh install uses it


def test_info_shows_the_refiner_with_a_matching_sha256():

    from vossegcli.cli import app

    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    refiner = [w for w in json.loads(result.stdout)["weights"] if w["role"] == "refiner"][0]
    assert refiner["manifest_sha256_matches"] is True and refiner["file"].endswith(".pt")


def test_manifest_describes_the_shipped_target_features_and_the_default_engine_uses_them():
    from vossegcli.engine.target_features import load_target_features

    meta = json.loads((WEIGHTS_DIR / "manifest.json").read_text())["target_features"]
    path, sha = weights_file("target_features", "default")
    assert path is not None and path.name == meta["file"] and sha == meta["sha256"]
    assert path.stat().st_size < 20 * 2**20
    for key in ("training_data", "steps", "command", "wall_time", "device", "scores", "license"):
        assert meta[key], key
    adapter = load_target_features(path)
    assert all(adapter.config.as_dict()[k] == v for k, v in meta["config"].items())
    assert all(torch.isfinite(p).all() for p in adapter.parameters())
    segmenter = Segmenter(SegmenterConfig(), device="cpu")
    assert segmenter.target_features is not None  # a fresh install uses them
    assert Segmenter(SegmenterConfig(target_features=None), device="cpu").target_features is None


def test_info_shows_the_target_features_with_a_matching_sha256():

    from vossegcli.cli import app

    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    shown = [w for w in json.loads(result.stdout)["weights"] if w["role"] == "target-model features"][0]
    assert shown["manifest_sha256_matches"] is True and shown["file"].endswith(".pt")
