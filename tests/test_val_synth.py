"""eval/synth.py: the val-synth yardstick (issue 11, item 1). Needs ../shared/data/duts-tr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vossegcli.datasets.cutouts import DutsPool
from vossegcli.datasets.roots import duts_root, duts_split
from vossegcli.eval import synth
from vossegcli.io.palette import read_label_png

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(not (DATA / "duts-tr" / "index.json").is_file(), reason="needs ../shared/data/duts-tr"),
]


@pytest.fixture(scope="module")
def pool():
    return DutsPool(duts_root(DATA))


def test_held_out_images_are_every_tenth_and_never_in_the_training_part():
    train, held = duts_split(duts_root(DATA))
    assert len(held) == 700 and len(train) == 6300
    assert not set(train) & set(held) and all(int(i) % 10 == 0 for i in held)


@pytest.mark.slow
def test_clips_are_deterministic_and_start_with_every_object_visible(pool):
    for scenario in synth.SCENARIOS:
        frames, labels = synth.render_clip(pool, scenario, 3, frames=6)
        again, labels_again = synth.render_clip(pool, scenario, 3, frames=6)
        assert all(np.array_equal(a, b) for a, b in zip(frames, again))
        assert all(np.array_equal(a, b) for a, b in zip(labels, labels_again))
        assert frames[0].shape == (synth.HEIGHT, synth.WIDTH, 3) and labels[0].dtype == np.uint8
        ids = [i for i in np.unique(labels[0]) if i]
        assert ids and all((labels[0] == i).sum() >= synth.MIN_START_AREA for i in ids)


def test_scenarios_do_what_their_names_say(pool):
    _, occl = synth.render_clip(pool, "occlusion", 0)
    assert 2 <= len([i for i in np.unique(occl[0]) if i]) <= 4
    _, scale = synth.render_clip(pool, "scale", 0)
    areas = [int((lab > 0).sum()) for lab in scale]
    assert max(areas[0], areas[-1]) >= 4 * min(areas[0], areas[-1])  # ~3x in height
    _, fast = synth.render_clip(pool, "fast", 0)
    centres = [np.argwhere(lab > 0).mean(axis=0) for lab in fast if (lab > 0).any()]
    steps = [np.linalg.norm(b - a) for a, b in zip(centres, centres[1:])]
    assert np.median(steps) > 12  # pixels per frame at 480x272
    _, dist = synth.render_clip(pool, "distractor", 0)
    assert [i for i in np.unique(dist[0]) if i] == [1]  # the look-alike is not labelled
    import random

    tracks = synth._tracks("distractor", pool, random.Random(1), 4)
    real = next(t for t in tracks if t.label == 1)
    fake = next(t for t in tracks if t.label == 0)
    assert np.array_equal(fake.cut.rgb, real.cut.rgb[:, ::-1])  # a mirrored copy of the same object


def test_crowd_clips_put_four_different_lookalikes_around_the_object(pool):
    import random

    _, labels = synth.render_clip(pool, "crowd", 0)
    assert [i for i in np.unique(labels[0]) if i] == [1]  # the crowd is not labelled
    tracks = synth._tracks("crowd", pool, random.Random(5), 4)
    target = next(t for t in tracks if t.label == 1)
    crowd = [t for t in tracks if t.label == 0]
    assert len(crowd) == 4 and tracks[0].label == 0 and tracks[-1].label == 0  # some behind, some in front
    shapes = {t.cut.rgb.shape for t in crowd} | {target.cut.rgb.shape}
    assert len(shapes) == 5  # different objects, not copies
    key = next(k for k in pool.ids if pool.cutout(k) is not None)
    near = pool.lookalikes(key, 4)
    ref = pool.descriptor(key)
    far = [k for k in pool.ids[:60] if k != key and k not in near and pool.descriptor(k) is not None]
    dist = lambda k: np.abs(pool.descriptor(k)[:64] - ref[:64]).sum() + abs(pool.descriptor(k)[64] - ref[64])  # noqa: E731
    assert max(dist(k) for k in near) <= min(dist(k) for k in far)  # the nearest in look


def test_thin_objects_lose_much_of_their_area_to_erosion(pool):
    thin = pool.thin_ids()
    assert len(thin) >= 10 and set(thin) <= set(pool.ids)


@pytest.mark.slow
def test_build_writes_frame_folders_and_masks_once(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "CLIPS_PER_SCENARIO", 1)
    monkeypatch.setattr(synth, "FRAMES", 3)
    calls = []
    cache = synth.build_val_synth(DATA, tmp_path / "cache", progress=lambda *a: calls.append(a))
    names = synth.clip_names()
    assert len(names) == len(synth.SCENARIOS) and len(calls) == len(names)
    for name in names:
        assert len(list((cache / "frames" / name).glob("*.jpg"))) == 3
        first = read_label_png(cache / "masks" / name / "00000.png")
        assert first.shape == (synth.HEIGHT, synth.WIDTH) and first.max() >= 1
    synth.build_val_synth(DATA, tmp_path / "cache", progress=lambda *a: calls.append(a))
    assert len(calls) == len(names)  # reused, not rendered again
