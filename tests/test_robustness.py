"""Issue 5: what the user sees when things go wrong - bad input, interruption and resume, full
disks, out of memory, large frames - and that nothing is ever left half-written.

Most tests replace the engine by :class:`FakeSegmenter` (it repeats the last given mask), because
they test the plumbing around it; the tests marked "real engine" run the actual engine on a few
frames of the bundled sample with ``--preset fast``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

import vossegcli.pipeline as pipeline
import vossegcli.run.outputs as outputs
import vossegcli.run.segment as segment_module
from vossegcli.engine.config import SegmenterConfig
from vossegcli.engine.state import StageTimes
from vossegcli.io.palette import davis_palette, read_label_png, write_label_png
from vossegcli.io.run_folder import RunFolder
from vossegcli.sample import sample_paths
from support import run_cli

SAMPLE = sample_paths()
W, H = 320, 240



def error_line(result) -> str:
    """The one 'error:' line of a failed command (and check that there is exactly one)."""
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def pngs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.png"))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def sample_frames(n: int) -> list[np.ndarray]:
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(SAMPLE.video), pix_fmt="rgb24")
    next(gen)
    frames = []
    for buf in gen:
        frames.append(np.frombuffer(buf, np.uint8).reshape(H, W, 3).copy())
        if len(frames) == n:
            break
    gen.close()
    return frames


def frame_folder(root: Path, n: int, scale: float = 1.0) -> Path:
    """The first ``n`` frames of the sample as PNGs 00000.png ... (optionally scaled)."""
    folder = root / "frames"
    folder.mkdir()
    for i, image in enumerate(sample_frames(n)):
        im = Image.fromarray(image)
        if scale != 1.0:
            im = im.resize((round(W * scale), round(H * scale)), Image.Resampling.BILINEAR)
        im.save(folder / f"{i:05d}.png")
    return folder


class FakeSegmenter:
    """The engine's interface without the engine: every frame gets the last given mask.

    Records what it was given (``calls``) and calls ``hook(index)`` before each frame, where a
    test can raise or send a signal.
    """

    calls: list[dict] = []
    hook = None

    def __init__(self, config=None, device="cpu", backbone=None, deterministic=False):
        self.config = config or SegmenterConfig()
        self.device = torch.device("cpu")
        self.times = StageTimes()
        self.backbone = SimpleNamespace(weights_path="fake.pth", weights_sha256=lambda: "0" * 64)
        self.precision = "fp32"

    def new_state(self):
        record = {"initial": {}, "shapes": []}
        FakeSegmenter.calls.append(record)
        return FakeState(record)

    def load_state(self, path):
        raise ValueError("the fake engine saves no state")

    def step(self, state, image, given=None):
        state.record["shapes"].append(image.shape)
        if FakeSegmenter.hook is not None:
            FakeSegmenter.hook(len(state.record["shapes"]) - 1)  # frames this call has seen
        if given is not None:
            state.record["initial"][state.frame_index] = given.copy()
            state.current = given.copy() if state.current is None else np.where(given > 0, given, state.current)
        state.times.backbone += 0.001
        state.times.frames += 1
        state.frame_index += 1
        labels = state.current if state.current is not None else np.zeros(image.shape[:2], np.uint8)
        return labels.copy()


class FakeState:
    """The engine state's interface: a frame counter, timers, and no saved file."""

    def __init__(self, record):
        self.record = record
        self.frame_index = 0
        self.times = StageTimes()
        self.extra = {}
        self.current = None
        self.num_objects = 0
        self.diagnostics = None  # the fake engine judges nothing

    def save(self, path) -> None:
        pass

    def memory_bytes(self) -> int:
        return 0


@pytest.fixture
def fake_engine(monkeypatch):
    FakeSegmenter.calls = []
    FakeSegmenter.hook = None
    monkeypatch.setattr(segment_module, "Segmenter", FakeSegmenter)
    yield FakeSegmenter
    FakeSegmenter.hook = None


# =============================================================================== bad input


def test_directory_with_no_images(tmp_path):
    empty = tmp_path / "shots"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    result = run_cli("segment", empty, "--mask", SAMPLE.mask, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "shots" in error_line(result) and "no frame images" in error_line(result)
    assert not (tmp_path / "o").exists()


def test_file_that_is_not_a_video(tmp_path):
    fake = tmp_path / "holiday.mp4"
    fake.write_text("<html>404 not found</html>\n" * 50)
    result = run_cli("segment", fake, "--mask", SAMPLE.mask, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "holiday.mp4" in error_line(result) and "re-encode" in error_line(result)
    assert not (tmp_path / "o").exists()


def test_zero_frame_video(tmp_path):
    import imageio_ffmpeg

    video = tmp_path / "empty.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=red:s=64x48:r=25",
         "-frames:v", "0", "-c:v", "libx264", str(video)],
        check=True,
    )
    result = run_cli("segment", video, "--mask", SAMPLE.mask, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "empty.mp4" in error_line(result) and "no video frames" in error_line(result)
    assert not (tmp_path / "o").exists()


def test_one_frame_video_gives_the_mask_back(tmp_path):
    """Real engine: a single frame is just the start frame; the output is the given mask."""
    import imageio_ffmpeg

    video = tmp_path / "still.mp4"
    writer = imageio_ffmpeg.write_frames(str(video), (W, H), fps=24, macro_block_size=1, ffmpeg_log_level="error")
    writer.send(None)
    writer.send(sample_frames(1)[0])
    writer.close()
    out = tmp_path / "o"
    result = run_cli("segment", video, "--mask", SAMPLE.mask, "--out", out, "--preset", "fast", "--augment", "0")
    assert result.exit_code == 0, result.output
    assert pngs(out) == ["00000.png"]
    assert np.array_equal(read_label_png(out / "00000.png"), read_label_png(SAMPLE.mask))


def test_frames_of_differing_sizes_in_a_folder(tmp_path):
    folder = frame_folder(tmp_path, 3)
    Image.fromarray(np.zeros((200, 300, 3), np.uint8)).save(folder / "00003.png")
    result = run_cli("segment", folder, "--mask", SAMPLE.mask, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "00003.png: 300x200" in error_line(result) and "same size" in error_line(result)
    assert not (tmp_path / "o").exists()


def test_damaged_frame_in_a_folder_part_way(tmp_path, fake_engine):
    """A frame whose header reads but whose data is cut: the frames before it are written."""
    folder = frame_folder(tmp_path, 6)
    data = (folder / "00004.png").read_bytes()
    (folder / "00004.png").write_bytes(data[: len(data) // 2])
    out = tmp_path / "o"
    result = run_cli("segment", folder, "--mask", SAMPLE.mask, "--out", out)
    assert result.exit_code == 2
    line = error_line(result)
    assert "00004.png" in line and "masks for frames 0-3" in line
    assert pngs(out) == [f"{i:05d}.png" for i in range(4)] and not leftovers(out)


def truncated_sample(tmp_path: Path) -> Path:
    """The sample mp4 (moov atom first) cut in half, like an interrupted download: 26 of 72 frames decode."""
    data = SAMPLE.video.read_bytes()
    cut = tmp_path / "half.mp4"
    cut.write_bytes(data[: len(data) // 2])
    return cut


def test_truncated_video_writes_every_decodable_frame_then_exits_2(tmp_path, fake_engine):
    out = tmp_path / "o"
    result = run_cli("segment", truncated_sample(tmp_path), "--mask", SAMPLE.mask, "--out", out)
    assert result.exit_code == 2
    line = error_line(result)
    match = re.search(r"half\.mp4: unreadable from frame (\d+) on \(file truncated or corrupt", line)
    assert match, line
    good = int(match.group(1))
    assert 10 < good < 72
    assert f"masks for frames 0-{good - 1}" in line and str(out) in line
    assert pngs(out) == [f"{i:05d}.png" for i in range(good)] and not leftovers(out)
    # ffmpeg's own messages are summarised in that line, never dumped on the terminal
    assert "[h264" not in result.output and "ffmpeg version" not in result.output
    assert len(result.output.splitlines()) < 12


def test_damage_ffmpeg_conceals_is_a_warning(tmp_path, fake_engine):
    data = bytearray(SAMPLE.video.read_bytes())
    middle = len(data) // 2
    data[middle: middle + 4000] = bytes(4000)
    video = tmp_path / "scratched.mp4"
    video.write_bytes(bytes(data))
    out = tmp_path / "o"
    result = run_cli("segment", video, "--mask", SAMPLE.mask, "--out", out)
    assert result.exit_code == 0, result.output
    warning = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "scratched.mp4" in warning[0] and "decoding error" in warning[0]
    assert len(pngs(out)) >= 70


def test_jpeg_mask_is_refused_with_the_snap_hint(tmp_path):
    jpg = tmp_path / "mask.jpg"
    Image.fromarray(np.array(davis_palette(), np.uint8).reshape(256, 3)[read_label_png(SAMPLE.mask)]).save(jpg, quality=80)
    result = run_cli("segment", "--mask", jpg, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "mask.jpg" in error_line(result) and "--snap-mask" in error_line(result)
    assert not (tmp_path / "o").exists()


def test_unreadable_mask(tmp_path):
    bad = tmp_path / "mask.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    result = run_cli("segment", "--mask", bad, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "mask.png" in error_line(result) and "cannot be decoded" in error_line(result)
    assert not (tmp_path / "o").exists()


def test_empty_mask(tmp_path):
    empty = tmp_path / "blank.png"
    write_label_png(empty, np.zeros((H, W), np.uint8))
    result = run_cli("segment", "--mask", empty, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "blank.png" in error_line(result) and "no object pixels" in error_line(result)
    assert not (tmp_path / "o").exists()


def antialiased_sample_mask(path: Path) -> np.ndarray:
    """The sample's first-frame mask as an image editor would export it: RGB with blurred edges."""
    labels = read_label_png(SAMPLE.mask)
    rgb = np.array(davis_palette(), np.uint8).reshape(256, 3)[labels]
    Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(1.2)).save(path)
    return labels


def test_antialiased_mask_is_refused_then_snapped(tmp_path, fake_engine):
    soft = tmp_path / "soft.png"
    truth = antialiased_sample_mask(soft)
    out = tmp_path / "o"
    refused = run_cli("segment", "--mask", soft, "--out", out)
    assert refused.exit_code == 2
    assert "soft.png" in error_line(refused) and "anti-aliased" in error_line(refused)
    assert "--snap-mask" in error_line(refused)
    assert not out.exists()

    result = run_cli("segment", "--mask", soft, "--out", out, "--snap-mask")
    assert result.exit_code == 0, result.output
    assert re.search(r"soft\.png: --snap-mask mapped [\d,]+ px", result.output)
    assert "object 1" in result.output and "object 2" in result.output and "object 3" not in result.output
    first = read_label_png(out / "00000.png")
    assert set(np.unique(first).tolist()) == {0, 1, 2}
    assert np.mean(first != truth) < 0.01  # the blur is undone to within its edge pixels


def test_rgb_mask_with_too_many_colours(tmp_path):
    rgb = np.zeros((H, W, 3), np.uint8)
    for i in range(40):  # 40 solid, distinct colour patches: 40 objects, more than 32
        y, x = divmod(i, 8)
        rgb[10 + 40 * y: 40 + 40 * y, 5 + 38 * x: 35 + 38 * x] = (40 + 5 * i, 255 - 5 * i, (97 * i) % 256)
    path = tmp_path / "crowd.png"
    Image.fromarray(rgb).save(path)
    result = run_cli("segment", "--mask", path, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "crowd.png" in error_line(result) and "more than the 32" in error_line(result)
    assert not (tmp_path / "o").exists()


def test_mask_frame_index_beyond_a_folder(tmp_path):
    folder = frame_folder(tmp_path, 5)
    result = run_cli("segment", folder, "--mask", f"9:{SAMPLE.mask}", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "frame index 9 is past the end" in error_line(result)
    assert not (tmp_path / "o").exists()


def binary_mask(path: Path) -> Path:
    labels = np.zeros((H, W), np.uint8)
    labels[200:230, 10:60] = 255
    Image.fromarray(labels, mode="L").save(path)
    return path


def test_mask_frame_index_beyond_a_video(tmp_path):
    """A video's length is only known from metadata: clearly too far is refused up front."""
    late = binary_mask(tmp_path / "late.png")
    result = run_cli("segment", SAMPLE.video, "--mask", SAMPLE.mask, "--mask", f"500:{late}", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "frame 500" in error_line(result) and "about 72 frames" in error_line(result)
    assert not (tmp_path / "o").exists()


def test_mask_frame_index_just_past_the_end_of_a_video(tmp_path, fake_engine):
    """Within the metadata's margin: found out at the end of decoding, after all frames are written."""
    late = binary_mask(tmp_path / "late.png")
    out = tmp_path / "o"
    result = run_cli("segment", SAMPLE.video, "--mask", SAMPLE.mask, "--mask", f"72:{late}", "--out", out)
    assert result.exit_code == 2
    assert "late.png: mask is for frame 72 but" in error_line(result) and "only 72 frames (0..71)" in error_line(result)
    assert len(pngs(out)) == 72 and not leftovers(out)


def test_a_correction_of_a_frame_past_the_end_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "o"
    result = run_cli("segment", "--mask", SAMPLE.mask, "--mask", f"500:{SAMPLE.gt_dir / '00010.png'}", "--out", out)
    assert result.exit_code == 2
    assert "00010.png: mask is for frame 500 but" in error_line(result)
    assert not out.exists()


# =========================================================================== output problems


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_output_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = run_cli("segment", "--out", locked / "masks")
        assert result.exit_code == 2
        assert "not writable" in error_line(result)
        result = run_cli("segment", "--out", locked)
        assert result.exit_code == 2
        assert "not writable" in error_line(result)
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


def test_unwritable_output_folder_is_refused_before_running(tmp_path, monkeypatch):
    """The same check as the read-only test, for machines where tests run as root."""
    monkeypatch.setattr(outputs, "_writable", lambda path: False)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("segment", "--out", empty)
    assert result.exit_code == 2 and "empty: folder is not writable" in error_line(result)
    result = run_cli("segment", "--out", tmp_path / "new" / "masks")
    assert result.exit_code == 2 and "cannot create the output folder here" in error_line(result)
    assert list(empty.iterdir()) == [] and not (tmp_path / "new").exists()


def test_output_location_that_is_a_file(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = run_cli("segment", "--out", afile)
    assert result.exit_code == 2 and "afile: exists and is not a folder" in error_line(result)
    result = run_cli("segment", "--out", afile / "masks")
    assert result.exit_code == 2 and "cannot create the output folder" in error_line(result)
    assert afile.read_text() == "x"


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "disk is full"), (errno.EACCES, "no permission")])
def test_write_failure_part_way(tmp_path, fake_engine, monkeypatch, code, words):
    """ENOSPC / EACCES on the 6th PNG: one line that says why and how far it got, no temp files."""
    real_write = outputs.write_label_png  # called by the background PNG writer
    count = {"n": 0}

    def failing_write(path, labels, palette=None):
        count["n"] += 1
        if count["n"] == 6:
            # a half-written temporary file, as a full disk leaves it
            (Path(path).parent / f".{Path(path).stem}.abcd1234.tmp").write_bytes(b"\x89PNG")
            raise OSError(code, os.strerror(code))
        real_write(path, labels, palette)

    monkeypatch.setattr(outputs, "write_label_png", failing_write)
    out = tmp_path / "o"
    result = run_cli("segment", "--out", out)
    assert result.exit_code == 2
    line = error_line(result)
    assert "00005.png" in line and words in line and "masks for frames 0-4" in line and "--resume" in line
    assert pngs(out) == [f"{i:05d}.png" for i in range(5)] and not leftovers(out)


def test_write_failure_of_the_run_record_before_any_frame(tmp_path, fake_engine, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(RunFolder, "write_record", no_space)
    result = run_cli("segment", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "disk is full" in error_line(result)
    assert not (tmp_path / "o").exists()  # the folder it had just created is removed again


# ================================================================================== memory


def test_out_of_cpu_memory_says_what_to_lower(tmp_path, fake_engine):
    def oom(index):
        if index == 2:
            raise MemoryError()

    fake_engine.hook = staticmethod(oom)
    result = run_cli("segment", "--out", tmp_path / "o")
    assert result.exit_code == 2
    line = error_line(result)
    assert "out of memory at frame 2" in line and "--max-size" in line and "masks for frames 0-1" in line


def test_out_of_gpu_memory_says_what_to_lower(tmp_path, fake_engine, monkeypatch):
    def oom(index):
        if index == 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    fake_engine.hook = staticmethod(oom)
    monkeypatch.setattr(segment_module, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)
    out = tmp_path / "o"
    result = run_cli("segment", "--out", out)
    assert result.exit_code == 2
    line = error_line(result)
    assert "out of GPU memory at frame 3" in line
    for advice in ("--max-size", "--device cpu", "--preset fast", "fewer objects", "--resume"):
        assert advice in line
    assert "masks for frames 0-2" in line
    assert pngs(out) == ["00000.png", "00001.png", "00002.png"]


# ======================================================================= interrupt and resume


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_cleanly_with_a_resume_hint(tmp_path, fake_engine, signum, code):
    def stop(index):
        if index == 5:
            os.kill(os.getpid(), signum)
            time.sleep(0.5)  # the handler runs here

    fake_engine.hook = staticmethod(stop)
    out = tmp_path / "o"
    before = signal.getsignal(signal.SIGINT)
    result = run_cli("segment", "--out", out, "--preset", "fast")
    assert result.exit_code == code, result.output
    name = signal.Signals(signum).name
    # the signal arrived while frame 5 was being segmented: that frame is finished first
    assert f"stopped: interrupted by {name} after 6 of 72 frames" in result.output
    assert f"--out {out} --preset fast --resume" in result.output
    assert pngs(out) == [f"{i:05d}.png" for i in range(6)] and not leftovers(out)
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


def test_overlay_interrupted_leaves_no_partial_video(tmp_path, monkeypatch):
    import vossegcli.io.overlay as overlay_module

    real_blend = overlay_module.blend
    calls = {"n": 0}

    def blend(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)
        return real_blend(*args, **kwargs)

    monkeypatch.setattr(overlay_module, "blend", blend)
    video = tmp_path / "overlay.mp4"
    result = run_cli("overlay", SAMPLE.video, SAMPLE.gt_dir, "--out", video)
    assert result.exit_code == 143, result.output
    assert "interrupted by SIGTERM; no overlay video was written" in result.output
    assert list(tmp_path.iterdir()) == []


def test_resume_continues_from_the_last_complete_frame(tmp_path, fake_engine):
    folder = frame_folder(tmp_path, 12)
    late = binary_mask(tmp_path / "late.png")  # a third object that starts on frame 9
    args = ["segment", folder, "--mask", SAMPLE.mask, "--mask", f"9:{late}", "--out", tmp_path / "o"]

    def crash(index):
        if index == 6:
            raise KeyboardInterrupt

    fake_engine.hook = staticmethod(crash)
    assert run_cli(*args).exit_code == 130
    out = tmp_path / "o"
    assert pngs(out) == [f"{i:05d}.png" for i in range(6)]
    # a crash (SIGKILL) can leave a temporary file and a cut PNG: both are dealt with
    (out / ".00006.q1w2e3r4.tmp").write_bytes(b"partial")
    data = (out / "00005.png").read_bytes()
    (out / "00005.png").write_bytes(data[:40])

    fake_engine.hook = None
    result = run_cli(*args, "--resume")
    assert result.exit_code == 0, result.output
    assert "resuming after frame 4" in result.output
    assert pngs(out) == [f"{i:05d}.png" for i in range(12)] and not leftovers(out)
    for name in pngs(out):
        read_label_png(out / name)
    seeded = fake_engine.calls[-1]["initial"]
    assert sorted(seeded) == [4, 9]  # frame 4 re-seeds objects 1 and 2; object 3 starts on frame 9 as given
    assert set(np.unique(seeded[4]).tolist()) == {0, 1, 2}
    assert set(np.unique(seeded[9]).tolist()) == {0, 3}
    assert len(fake_engine.calls[-1]["shapes"]) == 8  # frames 4..11, frame 4 not rewritten
    record = json.loads((out / ".vosseg-run.json").read_text())
    assert record["complete"] and record["frames"] == 12 and record["resumed_from_frame"] == 4

    again = run_cli(*args, "--resume")
    assert again.exit_code == 0 and "already complete (12 frames)" in again.output


def test_resume_says_lost_objects_stay_lost(tmp_path, fake_engine):
    out = tmp_path / "o"

    def crash(index):
        if index == 4:
            raise KeyboardInterrupt

    fake_engine.hook = staticmethod(crash)
    assert run_cli("segment", "--out", out).exit_code == 130
    labels = read_label_png(out / "00003.png")
    write_label_png(out / "00003.png", np.where(labels == 2, 0, labels).astype(np.uint8))  # object 2 lost by frame 3
    fake_engine.hook = None
    result = run_cli("segment", "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert "object(s) 2 are not in frame 3" in result.output and "stay lost" in result.output


def test_resume_refuses_a_different_run(tmp_path, fake_engine):
    out = tmp_path / "o"
    fake_engine.hook = staticmethod(lambda i: (_ for _ in ()).throw(KeyboardInterrupt) if i == 3 else None)
    assert run_cli("segment", "--out", out, "--seed", "1").exit_code == 130
    fake_engine.hook = None
    before = pngs(out)
    edited = tmp_path / "edited.png"  # the same mask with one more pixel painted
    labels = read_label_png(SAMPLE.mask)
    labels[0, 0] = 1
    write_label_png(edited, labels)
    for extra, words in [
        (["--seed", "2"], "different engine options (seed)"),
        (["--seed", "1", "--mask", edited], "different masks"),
        (["--seed", "1", "--snap-mask"], "different --snap-mask"),
    ]:
        result = run_cli("segment", "--out", out, "--resume", *extra)
        assert result.exit_code == 2
        line = error_line(result)
        assert words in line and f"vosseg segment --out {out} --seed 1" in line and "--force" in line
    result = run_cli("segment", frame_folder(tmp_path, 4), "--mask", SAMPLE.mask, "--out", out, "--seed", "1", "--resume")
    assert result.exit_code == 2 and "different input" in error_line(result)
    assert pngs(out) == before
    # what may change: the device and --max-size (what one lowers after running out of memory)
    result = run_cli("segment", "--out", out, "--seed", "1", "--resume", "--device", "cpu", "--max-size", "200")
    assert result.exit_code == 0, result.output
    assert len(pngs(out)) == 72


def test_resume_edge_cases(tmp_path, fake_engine):
    strangers = tmp_path / "strangers"
    strangers.mkdir()
    (strangers / "holiday.png").write_bytes(b"x")
    result = run_cli("segment", "--out", strangers, "--resume")
    assert result.exit_code == 2 and "no .vosseg-run.json" in error_line(result)

    result = run_cli("segment", "--out", tmp_path / "o", "--resume", "--force")
    assert result.exit_code == 2 and "choose one" in error_line(result)

    fresh = tmp_path / "fresh"  # nothing to resume: --resume simply starts, so scripts can always pass it
    result = run_cli("segment", "--out", fresh, "--resume")
    assert result.exit_code == 0, result.output
    assert "nothing to resume yet" in result.output and len(pngs(fresh)) == 72


def test_non_empty_output_folder_mentions_resume(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "00000.png").write_bytes(b"x")
    result = run_cli("segment", "--out", out)
    assert result.exit_code == 2
    assert "--force" in error_line(result) and "--resume" in error_line(result)


def _wait_for_pngs(folder: Path, n: int, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if folder.is_dir() and len(list(folder.glob("*.png"))) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no PNGs appeared")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_real_run_interrupted_by_sigint_then_killed_then_resumed(tmp_path):
    """Real engine, real process: Ctrl-C part-way (exit 130, resume hint), resume, SIGKILL part-way
    (a crash), resume again: every frame is present, readable, and labelled with the objects."""
    folder = frame_folder(tmp_path, 16)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "vossegcli.cli", "segment", str(folder), "--mask", str(SAMPLE.mask),
           "--out", str(out), "--preset", "fast", "--augment", "0", "--device", "cpu"]
    env = {**os.environ, "COLUMNS": "300", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _wait_for_pngs(out, 2, proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    hint = re.search(r"continue with `([^`]+)`", stderr)
    assert hint and "interrupted by SIGINT" in stderr, stderr
    first_stop = len(pngs(out))
    assert 2 <= first_stop < 16 and not leftovers(out)

    resume_cmd = shlex.split(hint.group(1))
    assert resume_cmd[:2] == ["vosseg", "segment"] and resume_cmd[-1] == "--resume"
    proc = subprocess.Popen([sys.executable, "-m", "vossegcli.cli", *resume_cmd[1:]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    _wait_for_pngs(out, first_stop + 2, proc)
    proc.kill()  # SIGKILL: no clean-up at all
    proc.communicate(timeout=60)
    crashed_at = len(pngs(out))
    assert crashed_at < 16

    result = run_cli(*resume_cmd[1:])
    assert result.exit_code == 0, result.output
    names = pngs(out)
    assert names == [f"{i:05d}.png" for i in range(16)] and not leftovers(out)
    for name in names:
        labels = read_label_png(out / name)
        assert labels.shape == (H, W)
        assert set(np.unique(labels).tolist()) == {0, 1, 2}, name


def _segment_proc(args: list, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vossegcli.cli", "segment", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_resume_after_sigint_or_sigkill_is_byte_identical_to_an_uninterrupted_run(tmp_path):
    """Real engine (fast preset, shipped refiner), real processes. Stopped by SIGINT at a seeded
    random frame (reproducible: the seed and the frame are in the failure message), the run saves its engine state; killed by SIGKILL, it has its last periodic state (every
    5 frames here). Either way --resume writes exactly the PNGs of a run that was never stopped."""
    import random

    env = {**os.environ, "COLUMNS": "300"}
    base = ["--device", "cpu", "--preset", "fast", "--state-every", "5"]
    reference = tmp_path / "reference"
    assert run_cli("segment", "--out", reference, *base).exit_code == 0
    expected = {name: (reference / name).read_bytes() for name in pngs(reference)}
    assert len(expected) == 72 and not (reference / ".vosseg-state.pt").exists()  # removed when complete

    rng = random.Random(20261203)
    for stop, out in ((signal.SIGINT, tmp_path / "stopped"), (signal.SIGKILL, tmp_path / "killed")):
        at = rng.randint(8, 50)
        proc = _segment_proc(["--out", out, *base], env)
        _wait_for_pngs(out, at, proc)
        proc.send_signal(stop)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == (130 if stop == signal.SIGINT else -signal.SIGKILL), stderr
        assert (out / ".vosseg-state.pt").is_file() and len(pngs(out)) < 72
        result = run_cli("segment", "--out", out, *base, "--resume")
        assert result.exit_code == 0, result.output
        assert "resuming exactly after frame" in result.output and "re-seeded" not in result.output
        assert {name: (out / name).read_bytes() for name in pngs(out)} == expected, f"{stop.name} at {at}"
        assert not leftovers(out) and not (out / ".vosseg-state.pt").exists()


def test_resume_without_a_state_file_re_seeds_and_says_so(tmp_path, fake_engine):
    def crash(index):
        if index == 6:
            raise KeyboardInterrupt

    fake_engine.hook = staticmethod(crash)
    out = tmp_path / "o"
    assert run_cli("segment", "--out", out).exit_code == 130
    fake_engine.hook = None
    result = run_cli("segment", "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert "no usable engine state (.vosseg-state.pt is missing)" in result.output
    assert "differs from an uninterrupted run" in result.output


# ============================================================================ large frames


def test_max_size_scales_for_the_engine_and_writes_at_the_input_size(tmp_path, fake_engine):
    folder = frame_folder(tmp_path, 4, scale=2.0)  # 640x480 frames
    mask = tmp_path / "big_mask.png"
    big = np.asarray(Image.fromarray(read_label_png(SAMPLE.mask)).resize((640, 480), Image.Resampling.NEAREST))
    write_label_png(mask, big)
    out = tmp_path / "o"
    report = tmp_path / "run.json"
    result = run_cli("segment", folder, "--mask", mask, "--out", out, "--max-size", "320", "--report", report)
    assert result.exit_code == 0, result.output
    assert "segmented at 320x240" in result.output
    call = fake_engine.calls[-1]
    assert call["shapes"] == [(240, 320, 3)] * 4
    assert call["initial"][0].shape == (240, 320)
    assert np.array_equal(call["initial"][0], read_label_png(SAMPLE.mask))  # nearest 2x down of a 2x-up mask
    for name in pngs(out):
        with Image.open(out / name) as im:
            assert im.size == (640, 480) and im.mode == "P"
    assert np.array_equal(read_label_png(out / "00000.png"), big)
    data = json.loads(report.read_text())
    assert data["resolution"] == {"width": 640, "height": 480}
    assert data["internal_resolution"] == {"width": 320, "height": 240} and data["max_size"] == 320


def test_max_size_with_the_real_engine(tmp_path):
    """Real engine on frames twice the sample's size, segmented at the sample's size."""
    folder = frame_folder(tmp_path, 3, scale=2.0)  # 640x480
    mask = tmp_path / "big_mask.png"
    big = np.asarray(Image.fromarray(read_label_png(SAMPLE.mask)).resize((640, 480), Image.Resampling.NEAREST))
    write_label_png(mask, big)
    out = tmp_path / "o"
    result = run_cli("segment", folder, "--mask", mask, "--out", out, "--max-size", "320", "--preset", "fast",
                     "--augment", "0", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["internal_resolution"] == {"width": 320, "height": 240}
    assert np.array_equal(read_label_png(out / "00000.png"), big)
    later = read_label_png(out / "00002.png")
    assert later.shape == (480, 640) and set(np.unique(later).tolist()) == {0, 1, 2}


def test_default_max_size_keeps_480p_native_and_halves_1080p():
    assert pipeline.DEFAULT_MAX_SIZE == 960
    assert pipeline.internal_size(854, 480, 960) == (854, 480)
    assert pipeline.internal_size(1920, 1080, 960) == (960, 540)
    assert pipeline.internal_size(3840, 2160, 960) == (960, 540)
    assert pipeline.internal_size(1080, 1920, 960) == (540, 960)  # portrait
    assert pipeline.internal_size(1920, 1080, 0) == (1920, 1080)
    from vossegcli.cli import segment as segment_command
    import inspect

    default = inspect.signature(segment_command).parameters["max_size"].default.default
    assert default == pipeline.DEFAULT_MAX_SIZE


def test_object_too_small_for_max_size_is_refused_before_writing(tmp_path, fake_engine):
    speck = np.zeros((H, W), np.uint8)
    speck[101, 101] = 1  # not on the 1-in-8 grid nearest-neighbour scaling samples
    speck[20:60, 20:60] = 2
    mask = tmp_path / "speck.png"
    write_label_png(mask, speck)
    result = run_cli("segment", "--mask", mask, "--out", tmp_path / "o", "--max-size", "40")
    assert result.exit_code == 2
    assert "speck.png" in error_line(result) and "raise --max-size" in error_line(result)
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the trace reads /proc/self/status")
def test_report_traces_memory_during_the_run(tmp_path, fake_engine):
    report = tmp_path / "run.json"
    result = run_cli("segment", "--out", tmp_path / "o", "--report", report)
    assert result.exit_code == 0, result.output
    trace = json.loads(report.read_text())["memory_trace"]
    assert [t["frame"] for t in trace][:3] == [0, 9, 71]
    assert all(t["peak_rss_mb"] >= t["rss_mb"] > 0 for t in trace)


# ============================================================================= determinism


def test_same_input_and_seed_give_byte_identical_masks(tmp_path):
    """Real engine, twice on the same frames: fast preset with its seeded first-frame augmentation
    and one online update (every 16 frames)."""
    folder = frame_folder(tmp_path, 18)
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / run
        result = run_cli("segment", folder, "--mask", SAMPLE.mask, "--out", out, "--preset", "fast", "--seed", "3",
                         "--device", "cpu")
        assert result.exit_code == 0, result.output
        outputs.append({name: (out / name).read_bytes() for name in pngs(out)})
    assert len(outputs[0]) == 18 and outputs[0] == outputs[1]


def test_interrupt_during_the_backward_pass_keeps_the_forward_masks_and_says_how_to_redo_it(tmp_path, fake_engine, monkeypatch):
    from vossegcli.errors import RunInterrupted
    from vossegcli.io.run_folder import BACKWARD_DIR

    folder = frame_folder(tmp_path, 6)
    out = tmp_path / "o"

    def stopped(*args, **kwargs):
        (out / BACKWARD_DIR).mkdir()  # as if it had started caching frames
        raise KeyboardInterrupt

    monkeypatch.setattr(segment_module, "backward_pass", stopped)
    with pytest.raises(RunInterrupted, match="during the backward pass: all 6 forward masks are complete") as info:
        segment_module.segment(folder, [str(SAMPLE.mask)], out, device="cpu", bidirectional=True)
    assert info.value.signum == signal.SIGINT
    assert sorted(p.name for p in out.glob("*.png")) == [f"{t:05d}.png" for t in range(6)]
    assert not (out / BACKWARD_DIR).exists()
