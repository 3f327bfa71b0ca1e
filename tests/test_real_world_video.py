"""Issue 10: real-world video - variable frame rate, timestamps, rotation tags, and the rough edges a
new user meets (quiet terminal, contrasting overlay colours, plain `info`, usage lines, library
errors in library words).

The clips are generated here: a variable-frame-rate clip (frames stored at mixed durations, as
phones record), a clip with a display-rotation tag, and a 25 fps clip. The CLI runs in a real
subprocess, so anything ffmpeg would print straight to the terminal would be caught.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from vossegcli.cli import app
from vossegcli.errors import InputError, OutputError
from vossegcli.io.overlay import MIN_CONTRAST, contrasting_colour, write_overlay
from vossegcli.io.palette import read_label_png, write_label_png
from vossegcli.io.video import open_frames
from support import runner

W, H = 96, 64


def _picture(i: int) -> np.ndarray:
    """A frame with a bright square that moves one step per frame (so frames can be told apart)."""
    image = np.full((H, W, 3), 40, np.uint8)
    x = 8 + (i * 3) % (W - 40)
    image[20:44, x:x + 24] = (230, 200, 60)
    return image


def write_clip(path: Path, durations_ms: list[int], size=(W, H)) -> list[float]:
    """An H.264 mp4 whose frame i lasts durations_ms[i]; returns the presentation times in seconds."""
    unit = Fraction(1, 1000)
    times, t = [], 0
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.time_base = stream.codec_context.time_base = unit
        for i, d in enumerate(durations_ms):
            frame = av.VideoFrame.from_ndarray(_picture(i), format="rgb24")
            frame.pts, frame.time_base = t, unit
            times.append(t / 1000)
            t += d
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return times


def stored_times(path: Path) -> tuple[list[float], float]:
    """(presentation time of every stored frame, stream duration) as PyAV reads the file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [float(f.pts * stream.time_base) for f in container.decode(stream)]
        return times, float(stream.duration * stream.time_base)


VFR_DURATIONS = [33 if i % 3 else 100 for i in range(60)]  # 60 frames over ~3.9 s at mixed durations


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory) -> tuple[Path, list[float]]:
    path = tmp_path_factory.mktemp("vfr") / "phone.mp4"
    return path, write_clip(path, VFR_DURATIONS)


def _mask(path: Path) -> Path:
    labels = np.zeros((H, W), np.uint8)
    labels[20:44, 8:32] = 1
    write_label_png(path, labels, None)
    return path


def _cli(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "250"}  # one line per message
    return subprocess.run([sys.executable, "-m", "vossegcli.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)


def _foreign_lines(stderr: str) -> list[str]:
    """stderr lines that are not vosseg's own (progress bars, its notes and its one-line messages)."""
    ours = ("note:", "warning:", "error:", "segmenting", "overlay", "  ")
    return [line for line in stderr.splitlines()
            if line.strip() and not line.startswith(ours) and ".mp4: video," not in line and "━" not in line]


# ------------------------------------------------------------------------------------- reading


def test_variable_frame_rate_clip_reads_one_frame_per_stored_frame_with_its_timestamp(vfr_clip):
    path, times = vfr_clip
    ffmpeg_cfr = subprocess.run(  # what a constant-rate decode makes of it (the old behaviour)
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True).stdout
    assert len(ffmpeg_cfr) // (W * H * 3) > 60  # duplicated frames: the bug this issue is about
    reader = open_frames(path)
    assert reader.info.num_frames == 60 and reader.info.variable_frame_rate
    frames = list(reader)
    assert [f.index for f in frames] == list(range(60))
    assert [f.time for f in frames] == pytest.approx(times, abs=1e-3)
    for i in (0, 1, 30, 59):  # frame N is stored frame N (the square is where frame N put it)
        assert np.abs(frames[i].image.astype(int) - _picture(i)).mean() < 6
    assert reader.notes == [f"{path}: variable frame rate: 60 frames, timestamps kept"]
    assert reader.count_frames() == 60


def test_constant_rate_clip_has_index_over_fps_timestamps_and_no_note(tmp_path):
    path = tmp_path / "cfr.mp4"
    write_clip(path, [40] * 50)
    reader = open_frames(path)
    assert (reader.info.fps, reader.info.num_frames, reader.info.variable_frame_rate) == (25.0, 50, False)
    frames = list(reader)
    assert len(frames) == 50 and [f.time for f in frames] == pytest.approx([i / 25 for i in range(50)], abs=1e-3)
    assert reader.notes == [] and reader.warnings == []


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_tag_is_applied_like_ffmpeg_does(tmp_path, degrees):
    plain = tmp_path / "plain.mp4"
    write_clip(plain, [40] * 5)
    rotated = tmp_path / f"rot{degrees}.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-display_rotation", str(degrees),
                    "-i", str(plain), "-c", "copy", str(rotated)], check=True)
    reader = open_frames(rotated)
    upright = (W, H) if degrees == 180 else (H, W)
    assert (reader.info.width, reader.info.height) == upright and reader.info.rotation == degrees
    ours = [f.image for f in reader]
    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(rotated), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    theirs = np.frombuffer(raw, np.uint8).reshape(-1, upright[1], upright[0], 3)  # ffmpeg rotates by itself
    assert len(ours) == len(theirs) == 5
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))


def test_folder_frames_are_timed_by_the_given_rate(tmp_path):
    for i in range(3):
        Image.fromarray(_picture(i)).save(tmp_path / f"{i:03d}.png")
    reader = open_frames(tmp_path, folder_fps=10)
    assert reader.info.fps == 10 and [f.time for f in reader] == pytest.approx([0, 0.1, 0.2])
    with pytest.raises(ValueError, match="folder_fps"):
        open_frames(tmp_path, folder_fps=0)


# ------------------------------------------------------------------------- segment and overlay


@pytest.mark.slow
def test_segment_and_overlay_keep_a_variable_frame_rate_clip_as_stored_and_print_nothing_foreign(vfr_clip, tmp_path):
    path, times = vfr_clip
    masks = tmp_path / "masks"
    report = tmp_path / "run.json"
    seg = _cli("segment", path, "--mask", _mask(tmp_path / "m.png"), "--out", masks, "--preset", "fast",
               "--refiner", "none", "--device", "cpu", "--report", report)
    assert seg.returncode == 0, seg.stderr
    assert len(list(masks.glob("*.png"))) == 60 and json.loads(report.read_text())["frames"] == 60
    with (masks / "timestamps.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["mask"] for r in rows] == [f"{i:05d}.png" for i in range(60)]
    assert [float(r["time_s"]) for r in rows] == pytest.approx(times, abs=1e-3)
    assert seg.stderr.count("variable frame rate: 60 frames, timestamps kept") == 1
    assert _foreign_lines(seg.stderr) == [], seg.stderr

    video = tmp_path / "overlay.mp4"
    ov = _cli("overlay", path, masks, "--out", video)
    assert ov.returncode == 0, ov.stderr
    assert _foreign_lines(ov.stderr) == [], ov.stderr
    out_times, out_duration = stored_times(video)
    _, in_duration = stored_times(path)
    assert out_times == pytest.approx(times, abs=1e-3)  # same count, same timing
    assert abs(out_duration - in_duration) <= max(VFR_DURATIONS) / 1000


def test_overlay_of_a_25_fps_clip_keeps_count_rate_and_duration(tmp_path):
    path = tmp_path / "cfr.mp4"
    write_clip(path, [40] * 50)
    masks = tmp_path / "masks"
    masks.mkdir()
    for i in range(50):
        write_label_png(masks / f"{i:05d}.png", read_label_png(_mask(tmp_path / "m.png")), None)
    out = tmp_path / "o.mp4"
    assert write_overlay(path, masks, out) == 50
    times, duration = stored_times(out)
    assert times == pytest.approx([i / 25 for i in range(50)], abs=1e-3)
    assert abs(duration - 2.0) <= 1 / 25
    with pytest.raises(InputError, match="keeps its own timestamps"):
        write_overlay(path, masks, tmp_path / "o2.mp4", fps=30)


def test_frame_folder_overlay_plays_at_the_given_fps(tmp_path):
    frames = tmp_path / "frames"
    masks = tmp_path / "masks"
    frames.mkdir(), masks.mkdir()
    labels = read_label_png(_mask(tmp_path / "m.png"))
    for i in range(12):
        Image.fromarray(_picture(i)).save(frames / f"f{i:02d}.jpg")
        write_label_png(masks / f"f{i:02d}.png", labels, None)
    result = runner.invoke(app, ["overlay", str(frames), str(masks), "--out", str(tmp_path / "o.mp4"), "--fps", "30"])
    assert result.exit_code == 0, result.output
    times, duration = stored_times(tmp_path / "o.mp4")
    assert times == pytest.approx([i / 30 for i in range(12)], abs=1e-3) and abs(duration - 12 / 30) <= 1 / 30
    default = tmp_path / "d.mp4"
    assert write_overlay(frames, masks, default) == 12
    assert stored_times(default)[0] == pytest.approx([i / 24 for i in range(12)], abs=1e-3)


# ------------------------------------------------------------------------------ overlay colours


def test_an_object_coloured_like_its_mask_colour_gets_a_contrasting_one():
    red = np.array([128, 0, 0], np.uint8)  # DAVIS's colour for object 1
    chosen = contrasting_colour(np.array([150, 20, 20]), red, [])
    assert np.linalg.norm(chosen.astype(float) - [150, 20, 20]) >= MIN_CONTRAST
    assert np.array_equal(contrasting_colour(np.array([20, 20, 200]), red, []), red)  # a blue object stays red


def test_overlay_draws_a_red_object_in_a_contrasting_colour_with_an_outline(tmp_path):
    frames = tmp_path / "frames"
    masks = tmp_path / "masks"
    frames.mkdir(), masks.mkdir()
    image = np.full((H, W, 3), 90, np.uint8)
    image[16:48, 24:72] = (140, 10, 10)  # a red object; the mask palette colours it red too
    labels = np.zeros((H, W), np.uint8)
    labels[16:48, 24:72] = 1
    for i in range(3):
        Image.fromarray(image).save(frames / f"{i}.png")
        write_label_png(masks / f"{i}.png", labels, None)
    out = tmp_path / "o.mp4"
    write_overlay(frames, masks, out, alpha=0.5)
    with av.open(str(out)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(float)
    inside = first[24:40, 36:60].mean(axis=(0, 1))
    assert np.linalg.norm(inside - [140, 10, 10]) > 40  # visibly not the object's own red
    edge = first[16:18, 30:66].mean(axis=(0, 1))
    assert np.linalg.norm(edge - inside) > 20  # the outline differs from the tinted fill


# ------------------------------------------------------------------------------- rough edges


def test_info_says_plainly_whether_cuda_is_usable(monkeypatch):
    from vossegcli.engine import device

    monkeypatch.setattr(torch.version, "cuda", None)
    usable, line = device.cuda_status()
    assert not usable and line.startswith("no:") and "CPU-only build" in line and "pip install torch" in line
    monkeypatch.setattr(torch.version, "cuda", "12.6")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    usable, line = device.cuda_status()
    assert not usable and "finds no GPU" in line and "nvidia-smi" in line
    result = runner.invoke(app, ["info", "--json"])
    data = json.loads(result.output)
    assert data["gpu_usable"] is False and data["gpu"].startswith("no:")


def test_usage_lines_read_as_written():
    result = runner.invoke(app, ["evaluate", "--help"], env={"COLUMNS": "120"})
    assert "Usage: vosseg evaluate [OPTIONS] PRED GT" in result.output
    assert "{" not in result.output.splitlines()[1]
    result = runner.invoke(app, ["segment", "--help"], env={"COLUMNS": "120"})
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    assert usage.split() == ["Usage:", "vosseg", "segment", "[OPTIONS]", "[INPUT]"], usage


def test_benchmark_has_no_no_fps_switch():
    assert runner.invoke(app, ["benchmark", "--no-fps"]).exit_code == 2
    assert "--no-fps" not in runner.invoke(app, ["benchmark", "--help"], env={"COLUMNS": "200"}).output


def test_library_errors_name_keyword_arguments_and_the_cli_names_flags(tmp_path):
    from vossegcli.run.segment import segment

    sample = Path(__file__).resolve().parents[1] / "src" / "vossegcli" / "data" / "sample"
    out = tmp_path / "out"
    out.mkdir()
    (out / "something.txt").write_text("x")
    with pytest.raises(OutputError) as error:
        segment(sample / "sample.mp4", [str(sample / "mask.png")], out)
    assert "force=True" in str(error.value) and "--force" not in str(error.value)
    result = runner.invoke(app, ["segment", str(sample / "sample.mp4"), "--mask", str(sample / "mask.png"),
                                 "--out", str(out)])
    assert result.exit_code == 2 and "--force" in result.output and "force=True" not in result.output
