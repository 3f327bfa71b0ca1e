"""An object given on several frames (anchors): the engine takes each as the frame's truth, the
backward pass from a later anchor is blended into the frames before it, and ``--correct`` fixes a
finished run from a keyframe on."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from support import iou, look_change_clip
from vossegcli.engine.segmenter import Segmenter, SegmenterConfig
from vossegcli.io.palette import read_label_png, write_label_png
from vossegcli.run import anchors as anchor_blend
from vossegcli.run.corrections import keep_keyframe, keyframes
from vossegcli.run.segment import segment


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The look-change clip as a frame folder, with its ground truth of frames 0 and 14 as masks."""
    root = tmp_path_factory.mktemp("look")
    images, labels = look_change_clip()
    (root / "frames").mkdir()
    for t, image in enumerate(images):
        Image.fromarray(image).save(root / "frames" / f"{t:05d}.png")
    for t in (0, 14, 22):
        write_label_png(root / f"m{t}.png", labels[t])
    return root, labels


def _ious(folder, labels):
    return [iou(read_label_png(folder / f"{t:05d}.png") == 1, labels[t] == 1) for t in range(len(labels))]


def test_an_anchor_frame_is_written_as_given_and_a_tracked_object_missing_from_it_is_absent_there():
    images, labels = look_change_clip(frames=8)
    two = labels[0].copy()
    two[150:180, 10:40] = 2
    seg = Segmenter(SegmenterConfig(), device="cpu")
    state = seg.new_state()
    seg.step(state, images[0], two)
    for t in range(1, 5):
        seg.step(state, images[t])
    anchor = labels[5]  # object 1 only: object 2 is declared absent on frame 5
    out = seg.step(state, images[5], anchor, probabilities=True)
    assert np.array_equal(out, anchor)
    d = state.diagnostics
    assert d.ids == [1, 2] and d.status == ["tracked", "absent"] and d.area[1] == 0
    assert state.probabilities.shape == (2, *anchor.shape) and not state.probabilities[1].any()
    assert state.memory.num_samples(0) == 10  # the start frame's 5 anchor samples + frame 5's 5 (tracked ones dropped)
    assert int(state.memory.anchor[0].sum()) == 10
    following = seg.step(state, images[6])
    assert iou(following == 1, labels[6] == 1) > 0.8


@pytest.mark.slow
def test_two_anchors_beat_one_on_a_clip_where_the_object_changes_look_and_the_blend_keeps_the_frames_before(clip, tmp_path):
    root, labels = clip
    segment(root / "frames", [f"0:{root / 'm0.png'}"], tmp_path / "one", device="cpu")
    one = _ious(tmp_path / "one", labels)
    segment(root / "frames", [f"0:{root / 'm0.png'}", f"14:{root / 'm14.png'}"], tmp_path / "two", device="cpu")
    two = _ious(tmp_path / "two", labels)
    assert not (tmp_path / "two" / ".vosseg-blend").exists()  # the backward cache is gone
    # After the change of look the first mask alone follows the old look; the second mask fixes it ...
    assert np.mean(two[12:]) > np.mean(one[12:]) + 0.15
    # ... and the frames between the masks are as good as the first mask alone made them, or better.
    assert np.mean(two[1:14]) >= np.mean(one[1:14]) - 0.01
    assert min(two[12:14]) > 0.75  # before the second mask: fixed by the backward pass (refiner v4: 0.80, 0.85)
    old = anchor_blend.BLEND
    try:
        anchor_blend.BLEND = False
        segment(root / "frames", [f"0:{root / 'm0.png'}", f"14:{root / 'm14.png'}"], tmp_path / "fwd", device="cpu")
    finally:
        anchor_blend.BLEND = old
    forward = _ious(tmp_path / "fwd", labels)
    assert max(forward[12:14]) < 0.6 and forward[14] == 1.0  # without the blend only the frames after it gain
    assert min(two[12:14]) > max(forward[12:14]) + 0.15


def test_keyframes_stay_within_their_count_and_spread_over_the_video(tmp_path, monkeypatch):
    import vossegcli.run.corrections as corrections

    monkeypatch.setattr(corrections, "MAX_KEYFRAMES", 4)
    state = tmp_path / "state.pt"
    for frame in range(10, 130, 10):
        state.write_bytes(b"x" * 100)
        keep_keyframe(state, tmp_path, frame)
        assert len(keyframes(tmp_path)) <= 4
    kept = list(keyframes(tmp_path))
    assert kept[-1] == 120 and len(kept) == 4
    gaps = np.diff([0] + kept)
    assert gaps.max() <= 2 * gaps.min() + 10  # evenly thinned, not the oldest dropped
    monkeypatch.setattr(corrections, "KEYFRAMES_BUDGET", 250)
    keep_keyframe(state, tmp_path, 130)
    assert list(keyframes(tmp_path))[-1] == 130 and len(keyframes(tmp_path)) == 2


@pytest.mark.slow
def test_a_correction_keeps_every_frame_before_its_keyframe_and_matches_a_full_run_from_there(clip, tmp_path, cli):
    root, labels = clip
    out, full = tmp_path / "out", tmp_path / "full"
    base = ["segment", root / "frames", "--mask", f"0:{root / 'm0.png'}", "--state-every", "10", "--threads", "1"]
    assert cli(*base, "--out", out).exit_code == 0
    assert sorted(keyframes(out)) == [10, 20, 30]
    before = {p.name: p.read_bytes() for p in out.glob("*.png")}
    (out / "00022.png").write_bytes((root / "m22.png").read_bytes())  # the user edits the run's own PNG in place
    result = cli(*base, "--out", out, "--correct", f"22:{out / '00022.png'}")
    assert result.exit_code == 0, result.output
    assert "correcting from frame 20" in result.output
    after = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert sorted(after) == sorted(before)
    assert all(after[f"{t:05d}.png"] == before[f"{t:05d}.png"] for t in range(20))  # untouched
    assert after["00022.png"] == (root / "m22.png").read_bytes()
    # From the keyframe on, the same as a full run given the correction as a mask
    assert cli("segment", root / "frames", "--mask", f"0:{root / 'm0.png'}", "--mask", f"22:{root / 'm22.png'}",
               "--state-every", "10", "--threads", "1", "--out", full).exit_code == 0
    assert all(after[f"{t:05d}.png"] == (full / f"{t:05d}.png").read_bytes() for t in range(20, 30))
    fixed = [iou(read_label_png(out / f"{t:05d}.png") == 1, labels[t] == 1) for t in range(23, 30)]
    assert np.mean(fixed) > 0.6  # toward the fix (the first mask alone: about 0.47 there)
    record = json.loads((out / ".vosseg-run.json").read_text())
    assert [c["frame"] for c in record["corrections"]] == [22] and record["complete"]
    assert (out / ".vosseg-corrections" / "000022.png").is_file()
    again = cli(*base, "--out", out, "--resume")  # the recorded correction is part of the run
    assert again.exit_code == 0 and "already complete" in again.output
    past = cli(*base, "--out", out, "--correct", f"45:{root / 'm22.png'}")
    assert past.exit_code == 2 and "45 is past the end of the video (30 frames" in past.output
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == after  # nothing removed
    other = cli(*base, "--out", out, "--preset", "fast", "--correct", f"25:{root / 'm22.png'}")
    assert other.exit_code == 2 and "holds a run with different engine options" in other.output
    assert "correct it with the same input, masks and options" in other.output and "--resume" not in other.output
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == after


def test_correct_needs_a_frame_index_and_a_run_to_correct(clip, tmp_path, cli):
    root, _ = clip
    base = ["segment", root / "frames", "--mask", f"0:{root / 'm0.png'}"]
    no_index = cli(*base, "--out", tmp_path / "a", "--correct", root / "m14.png")
    assert no_index.exit_code == 2 and "say which frame it corrects, as N:m14.png" in no_index.output
    nothing = cli(*base, "--out", tmp_path / "b", "--correct", f"14:{root / 'm14.png'}")
    assert nothing.exit_code == 2 and "holds no vosseg run to correct" in nothing.output
    assert not (tmp_path / "b").exists()
    both = cli(*base, "--out", tmp_path / "c", "--correct", f"14:{root / 'm14.png'}", "--resume")
    assert both.exit_code == 2 and "drop --resume" in both.output


@pytest.mark.slow
def test_remove_ends_an_object_from_its_frame_on_in_a_new_run_and_as_a_correction(tmp_path, cli):
    from vossegcli.sample import sample_paths

    sample = sample_paths()
    base = ["segment", sample.video, "--mask", sample.mask, "--state-every", "10", "--threads", "1"]
    plain, removed = tmp_path / "plain", tmp_path / "removed"
    assert cli(*base, "--out", plain).exit_code == 0
    result = cli(*base, "--out", removed, "--remove", "30:2")
    assert result.exit_code == 0, result.output
    frames = sorted(p.name for p in plain.glob("*.png"))
    assert all((plain / f).read_bytes() == (removed / f).read_bytes() for f in frames[:30])
    assert all(2 not in read_label_png(removed / f) for f in frames[30:])
    assert all(1 in read_label_png(removed / f) for f in frames[30:40])  # the other object goes on
    # the same removal on the finished run: a correction from the keyframe at or before frame 30
    corrected = cli(*base, "--out", plain, "--remove", "30:2")
    assert corrected.exit_code == 0 and "correcting from frame 30" in corrected.output
    assert all((plain / f).read_bytes() == (removed / f).read_bytes() for f in frames)
    record = json.loads((plain / ".vosseg-run.json").read_text())
    assert record["corrections"] == [{"frame": 30, "remove": [2]}]
    past = cli(*base, "--out", plain, "--remove", "73:1")  # the finished run has 72 frames: known exactly now
    assert past.exit_code == 2 and "--remove 73:1: frame 73 is past the end of the video (72 frames)" in past.output
    bad = cli(*base, "--out", tmp_path / "bad", "--remove", "30:7")
    assert bad.exit_code == 2 and "there is no object 7 (the objects are 1, 2)" in bad.output
    early = cli(*base, "--out", tmp_path / "bad", "--remove", "0:1")
    assert early.exit_code == 2 and "object 1 starts at frame 0; remove it from a later frame" in early.output
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_a_run_with_two_masks_resumed_between_them_from_a_keyframe_gives_the_same_masks(clip, tmp_path, cli):
    root, _ = clip
    out = tmp_path / "out"
    args = ["segment", root / "frames", "--mask", f"0:{root / 'm0.png'}", "--mask", f"14:{root / 'm14.png'}",
            "--state-every", "5", "--threads", "1", "--out", out]
    assert cli(*args).exit_code == 0
    whole = {p.name: p.read_bytes() for p in out.glob("*.png")}
    # as if the run had been killed after frame 11 with no state file: --resume falls back to the
    # keyframe of frame 10 and continues exactly from there
    for t in range(12, 30):
        (out / f"{t:05d}.png").unlink()
    record = json.loads((out / ".vosseg-run.json").read_text())
    (out / ".vosseg-run.json").write_text(json.dumps({**record, "complete": False, "frames": None}))
    resumed = cli(*args, "--resume")
    assert resumed.exit_code == 0 and "resuming exactly after frame 9" in resumed.output
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == whole


def test_corrections_parse_merge_and_record(tmp_path):
    from vossegcli.errors import MaskError, OutputError
    from vossegcli.run.corrections import Corrections

    fix = tmp_path / "fix.png"
    write_label_png(fix, np.ones((4, 4), np.uint8))
    new = Corrections.parse([f"12:{fix}"], ["20:2", "20:3,1"])
    assert new.masks == [(12, fix)] and new.removals == {20: [1, 2, 3]} and new.frames == [12, 20]
    out = tmp_path / "run"
    out.mkdir()
    listed = new.store(out)
    assert listed[0]["file"] == "000012.png" and (out / ".vosseg-corrections" / "000012.png").read_bytes() == fix.read_bytes()
    assert listed[1] == {"frame": 20, "remove": [1, 2, 3]}
    (out / ".vosseg-run.json").write_text(json.dumps({"corrections": listed}))
    again = Corrections.recorded(out)
    assert again.masks == [(12, out / ".vosseg-corrections" / "000012.png")] and again.removals == {20: [1, 2, 3]}
    merged = again.merged(Corrections.parse([f"12:{fix}", f"30:{fix}"], ["20:4"]))
    assert [f for f, _ in merged.masks] == [12, 30] and merged.masks[0][1] == fix and merged.removals == {20: [1, 2, 3, 4]}
    for bad, message in ((["x:2"], "write N:ID"), (["5"], "write N:ID")):
        with pytest.raises(MaskError, match=message):
            Corrections.parse([], bad)
    with pytest.raises(MaskError, match="two corrections for frame 3"):
        Corrections.parse([f"3:{fix}", f"3:{tmp_path / 'other.png'}"])
    # a kept correction changed (or lost) since the run used it is refused, unless a new one replaces it
    kept = out / ".vosseg-corrections" / "000012.png"
    write_label_png(kept, np.zeros((4, 4), np.uint8))
    with pytest.raises(OutputError, match="000012.png: the correction of frame 12 is changed since the run used it"):
        Corrections.recorded(out)
    assert Corrections.recorded(out, replaced={12}).removals == {20: [1, 2, 3]}
    kept.unlink()
    with pytest.raises(OutputError, match="frame 12 is missing"):
        Corrections.recorded(out)
