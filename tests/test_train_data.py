"""train/data.py: synthetic training clips - the object pool (ECSSD, DUTS-TR's training part) and
the realistic motion (issue 11, item 2)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from vossegcli.train.data import ObjectPool, _motion_blur, elastic_warp, synthetic_clip
from vossegcli.datasets.cutouts import Cutout

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(
    not (DATA / "duts-tr" / "index.json").is_file() or not (DATA / "ecssd").is_dir(), reason="needs ../shared/data"
)


@pytest.mark.shared
@needs_data
def test_pool_adds_duts_training_images_and_never_the_held_out_ones():
    ecssd = ObjectPool(DATA)
    both = ObjectPool(DATA, ("ecssd", "duts"))
    assert len(ecssd) == 1000 and len(both) == 1000 + 6300
    duts = [image for image in both.images if "duts-tr" in str(image)]
    assert duts and all(int(image.stem) % 10 for image in duts)  # every tenth is val-synth's
    with pytest.raises(ValueError, match="sources"):
        ObjectPool(DATA, ("coco",))


@pytest.mark.shared
@needs_data
def test_realistic_clips_are_deterministic_and_change_light_and_shape():
    pool = ObjectPool(DATA, ("ecssd", "duts"))
    a = synthetic_clip(pool, random.Random(5), 4, size=(128, 160), realistic=True)
    b = synthetic_clip(pool, random.Random(5), 4, size=(128, 160), realistic=True)
    assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames))
    assert all(np.array_equal(x, y) for x, y in zip(a.labels, b.labels))
    assert a.object_ids() and a.frames[0].shape == (128, 160, 3)


def _disc(radius: int = 20) -> Cutout:
    yy, xx = np.mgrid[: 2 * radius, : 2 * radius]
    alpha = (yy - radius + 0.5) ** 2 + (xx - radius + 0.5) ** 2 < radius**2
    rgb = np.zeros((2 * radius, 2 * radius, 3), np.uint8)
    rgb[alpha] = (200, 50, 50)
    return Cutout(rgb, alpha.astype(np.float32))


def test_elastic_warp_deforms_the_shape_but_keeps_its_size():
    disc = _disc()
    warped = elastic_warp(disc, random.Random(0), 0.08)
    assert warped.alpha.shape == disc.alpha.shape
    changed = (warped.alpha != disc.alpha).mean()
    assert 0.01 < changed < 0.3
    assert abs(int(warped.alpha.sum()) - int(disc.alpha.sum())) < 0.25 * disc.alpha.sum()
    assert np.array_equal(elastic_warp(disc, random.Random(0), 0.0).alpha, disc.alpha)  # no strength, no change


def test_motion_blur_spreads_along_the_motion_only():
    image = np.zeros((40, 40, 3), np.uint8)
    image[20, 20] = 255
    blurred = _motion_blur(image, 10, 0)
    row = blurred[20, :, 0]
    assert (row > 0).sum() >= 8 and blurred[:, 20, 0].sum() == row[20]  # along x, not along y
    assert np.array_equal(_motion_blur(image, 1, 1), image)  # too slow to blur
