"""Objects that vanish and come back (issue 12): a scene cut, an exit and re-entry, look-alike twins —
through the engine API and through the CLI (diagnostics, --bidirectional, overlay --diagnostics)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vossegcli.engine.segmenter import Segmenter
from vossegcli.engine.config import SegmenterConfig
from vossegcli.io.palette import read_label_png, write_label_png
from vossegcli.io.video import open_frames
from vossegcli.sample import HEIGHT, WIDTH, _Scene, sample_paths
from support import iou

CUT_AT, CUT_LEN = 12, 8



def _other_scene(t: int) -> np.ndarray:
    """A scene unlike the sample's: coloured blocks on a blue gradient, panning."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH + 64]
    img = np.stack([40 + 0 * xx, 60 + 80 * yy / HEIGHT, 150 + 60 * xx / (WIDTH + 64)], axis=2).astype(np.float32)
    for _ in range(14):
        x, y = rng.integers(0, WIDTH + 20), rng.integers(0, HEIGHT - 20)
        img[y:y + rng.integers(15, 60), x:x + rng.integers(15, 60)] = rng.integers(0, 255, 3)
    return np.ascontiguousarray(img[:, 2 * t:2 * t + WIDTH].clip(0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def cut_clip():
    """Sample frames 0..11, 8 frames of another scene, sample frames 12..23; ground truth empty in the cut."""
    with open_frames(sample_paths().video) as reader:
        sample = [f.image for f in reader][:24]
    gt = [read_label_png(sample_paths().gt_dir / f"{t:05d}.png") for t in range(24)]
    frames = sample[:CUT_AT] + [_other_scene(t) for t in range(CUT_LEN)] + sample[CUT_AT:]
    empty = np.zeros_like(gt[0])
    labels = gt[:CUT_AT] + [empty] * CUT_LEN + gt[CUT_AT:]
    return frames, labels


@pytest.fixture(scope="module")
def cut_run(cut_clip):
    frames, labels = cut_clip
    seg = Segmenter(SegmenterConfig(), device="cpu")
    results = list(seg.run(iter(frames), {0: labels[0]}))
    return results


def test_objects_get_empty_masks_during_a_scene_cut_and_are_found_again_after_it(cut_clip, cut_run):
    frames, labels = cut_clip
    for r in cut_run[CUT_AT:CUT_AT + CUT_LEN]:
        assert not np.any(r.labels), f"frame {r.index}: an object was painted onto the other scene"
        assert set(r.diagnostics.status) <= {"lost", "absent"}
    back = CUT_AT + CUT_LEN
    for r in cut_run[back + 2:]:
        for obj in (1, 2):
            assert iou(r.labels == obj, labels[r.index] == obj) > 0.5, f"frame {r.index}, object {obj}"
    assert cut_run[CUT_AT].diagnostics.scene_cut and cut_run[back].diagnostics.scene_cut
    assert not any(r.diagnostics.scene_cut for r in cut_run[1:CUT_AT])
    assert any(any(r.diagnostics.refound) for r in cut_run[back:back + 3])


def test_diagnostics_describe_every_frame_and_object(cut_run):
    first = cut_run[0].diagnostics
    assert first.ids == [1, 2] and first.status == ["tracked", "tracked"] and first.similarity == [1.0, 1.0]
    for r in cut_run[1:CUT_AT]:
        d = r.diagnostics
        assert d.frame == r.index and d.status == ["tracked", "tracked"]
        assert d.area == [int(np.count_nonzero(r.labels == i)) for i in (1, 2)]
        assert all(0.5 < p <= 1.0 for p in d.mean_probability)
        assert all(s > 0.65 for s in d.similarity)
        assert all(0.5 < a < 2.0 for a in d.area_ratio)


def test_without_absence_decisions_the_loss_is_still_reported_but_nothing_is_searched(cut_clip):
    from dataclasses import replace

    frames, labels = cut_clip
    config = SegmenterConfig()
    config = replace(config, presence=replace(config.presence, enabled=False))
    seg = Segmenter(config, device="cpu")
    results = list(seg.run(iter(frames[:CUT_AT + 3]), {0: labels[0]}))
    cut = results[CUT_AT:]
    assert all(set(r.diagnostics.status) <= {"lost", "uncertain"} for r in cut)  # judged, not acted on
    assert all("absent" not in r.diagnostics.status and not any(r.diagnostics.refound) for r in results)


def _cutout():
    """The sample's ellipse (object 1) cut from frame 0: (rgb, mask) of its bounding box."""
    with open_frames(sample_paths().video) as reader:
        frame = next(iter(reader)).image
    mask = read_label_png(sample_paths().mask) == 1
    ys, xs = np.nonzero(mask)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    return frame[box], mask[box]


def _paste(background, labels, rgb, mask, x, y, label):
    h, w = mask.shape
    for dy in range(h):
        for_x = np.arange(w) + x
        ok = (for_x >= 0) & (for_x < background.shape[1]) & mask[dy]
        if 0 <= y + dy < background.shape[0] and ok.any():
            background[y + dy, for_x[ok]] = rgb[dy, ok]
            labels[y + dy, for_x[ok]] = label


def _background(t):
    scene = _Scene(3)
    img = scene.background[::2, ::2][:HEIGHT, t:t + WIDTH]
    return np.clip(img, 0, 255).astype(np.uint8).copy()


@pytest.fixture(scope="module")
def exit_clip():
    """The ellipse walks out through the left edge (frames 0-5), is out of view for 8 frames, and
    walks back in from the right (fully in view from frame 17)."""
    rgb, mask = _cutout()
    w = mask.shape[1]
    xs = [110 - 24 * t for t in range(6)] + [-w - 10] * 8 + [WIDTH - 24 * (t + 1) for t in range(10)]
    frames, labels = [], []
    for t, x in enumerate(xs):
        img, lab = _background(t), np.zeros((HEIGHT, WIDTH), np.uint8)
        _paste(img, lab, rgb, mask, x, 90, 1)
        frames.append(img)
        labels.append(lab)
    return frames, labels


def _write_clip(folder, frames, labels):
    (folder / "frames").mkdir(parents=True)
    for t, f in enumerate(frames):
        Image.fromarray(f).save(folder / "frames" / f"{t:05d}.png")
    write_label_png(folder / "mask.png", labels[0])


def _vosseg(*args, cwd):
    return subprocess.run([sys.executable, "-m", "vossegcli.cli", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.slow
def test_an_object_that_leaves_and_reenters_is_blank_while_out_and_refound_with_bidirectional_filling_in(tmp_path, exit_clip):
    frames, labels = exit_clip
    _write_clip(tmp_path, frames, labels)
    out = tmp_path / "out"
    run = _vosseg("segment", "frames", "--mask", "mask.png", "--out", "out", "--bidirectional", "--report", "r.json",
                  cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    preds = [read_label_png(out / f"{t:05d}.png") for t in range(len(frames))]
    absent = [t for t in range(1, len(frames)) if not labels[t].any()]
    assert len(absent) == 8 and all(not preds[t].any() for t in absent)
    assert all(iou(preds[t] == 1, labels[t] == 1) > 0.5 for t in range(17, len(frames)))
    lines = (out / "diagnostics.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(len(frames)))
    status = {json.loads(line)["frame"]: json.loads(line)["objects"]["1"]["status"] for line in lines}
    # never "tracked" while out of view; judged gone once its region has not resembled it for 3 frames
    assert all(status[t] != "tracked" for t in absent)
    assert all(status[t] in ("lost", "absent") for t in absent[2:])
    runs = report["diagnostics"]["objects"]["1"]["runs"]
    assert any(s in ("lost", "absent") and first <= absent[2] and last >= absent[-1] for s, first, last in runs)
    assert "object 1:" in run.stdout and ("absent at" in run.stdout or "lost at" in run.stdout)
    assert report["bidirectional"]["stretches"] >= 1
    # the overlay draws the statuses; without diagnostics it says what to do
    ov = _vosseg("overlay", "frames", "out", "--out", "o.mp4", "--diagnostics", "--fps", "10", cwd=tmp_path)
    assert ov.returncode == 0, ov.stderr
    assert (tmp_path / "o.mp4").stat().st_size > 0
    (out / "diagnostics.jsonl").unlink()
    bad = _vosseg("overlay", "frames", "out", "--out", "p.mp4", "--diagnostics", "--fps", "10", cwd=tmp_path)
    assert bad.returncode == 2 and "diagnostics.jsonl: not found" in bad.stderr and not (tmp_path / "p.mp4").exists()


def test_a_lookalike_given_later_keeps_its_identity():
    """Two copies of the same object; the second is given at frame 4. Object 1 must not take over object 2."""
    rgb, mask = _cutout()
    frames, labels = [], []
    for t in range(14):
        img, lab = _background(t), np.zeros((HEIGHT, WIDTH), np.uint8)
        _paste(img, lab, rgb, mask, 30 + 3 * t, 80, 1)
        _paste(img, lab, rgb[:, ::-1], mask[:, ::-1], 200 - 3 * t, 100, 2)
        frames.append(img)
        labels.append(lab)
    given = {0: np.where(labels[0] == 1, 1, 0).astype(np.uint8), 4: np.where(labels[4] == 2, 2, 0).astype(np.uint8)}
    seg = Segmenter(SegmenterConfig(), device="cpu")
    results = list(seg.run(iter(frames), given))
    for r in results[5:]:
        assert iou(r.labels == 2, labels[r.index] == 2) > 0.6, f"frame {r.index}: object 2 lost its region"
        assert iou(r.labels == 1, labels[r.index] == 1) > 0.6, f"frame {r.index}: object 1 left its region"


def test_an_object_coming_back_into_view_is_refound_within_3_frames_without_the_backward_pass(exit_clip):
    frames, labels = exit_clip
    full = (labels[0] == 1).sum()
    back = next(t for t in range(6, len(frames)) if (labels[t] == 1).sum() >= 0.5 * full)  # half in view again
    results = list(Segmenter(SegmenterConfig(), device="cpu").run(iter(frames), {0: labels[0]}))
    refound = next(t for t in range(back, len(frames)) if iou(results[t].labels == 1, labels[t] == 1) > 0.5)
    assert refound - back <= 3
    assert all(iou(results[t].labels == 1, labels[t] == 1) > 0.5 for t in range(refound, len(frames)))
