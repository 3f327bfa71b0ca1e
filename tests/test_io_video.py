"""io/video.py: streaming frames from videos and frame folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from vossegcli.errors import InputError
from vossegcli.io.video import FrameReader, VideoInfo, natural_key, open_frames


def write_mp4(path: Path, n: int = 10, size=(64, 48), fps: float = 25.0) -> list[int]:
    """Frames of uniform brightness 10, 30, 50, ...; returns the brightness per frame."""
    w, h = size
    levels = [10 + (20 * i) % 240 for i in range(n)]
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, macro_block_size=1, ffmpeg_log_level="error")
    writer.send(None)
    for level in levels:
        writer.send(np.full((h, w, 3), level, dtype=np.uint8))
    writer.close()
    return levels


def test_video_reads_back_count_size_fps_and_content(tmp_path):
    video = tmp_path / "clip.mp4"
    levels = write_mp4(video, n=10, size=(64, 48), fps=25)
    reader = open_frames(video)
    info = reader.info
    assert isinstance(info, VideoInfo)
    assert (info.kind, info.width, info.height, info.fps) == ("video", 64, 48, 25.0)
    assert info.num_frames == 10  # metadata estimate, exact for this file
    assert info.frame_names is None
    frames = list(reader)
    assert [f.index for f in frames] == list(range(10))
    assert [f.name for f in frames] == [f"{i:05d}" for i in range(10)]
    for frame, level in zip(frames, levels):
        assert frame.image.shape == (48, 64, 3) and frame.image.dtype == np.uint8
        assert abs(float(frame.image.mean()) - level) < 4
    assert frames[0].image.flags.writeable
    assert reader.frame_name(3) == "00003"
    assert reader.count_frames() == 10


def test_video_can_be_iterated_twice(tmp_path):
    video = tmp_path / "clip.mp4"
    write_mp4(video, n=5)
    with open_frames(str(video)) as reader:
        first = [f.image.mean() for f in reader]
        second = [f.image.mean() for f in reader]
    assert len(first) == 5 and first == second


def _open_handles(path: Path) -> int:
    """How many file descriptors of this process point at ``path``."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            if os.readlink(fd) == str(path):
                count += 1
        except OSError:
            pass
    return count


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_early_break_and_close_release_the_decoder(tmp_path):
    video = tmp_path / "clip.mp4"
    write_mp4(video, n=30, size=(128, 96))
    reader = open_frames(video)
    assert _open_handles(video) == 0  # probing does not keep the file open
    iterator = iter(reader)
    next(iterator)  # held, not exhausted
    assert _open_handles(video) == 1, "a decoder should hold the file mid-iteration"
    reader.close()
    assert _open_handles(video) == 0
    for _ in reader:
        break
    del _
    import gc

    gc.collect()
    assert _open_handles(video) == 0


def test_folder_natural_order_and_color_conversion(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    names = ["frame10", "frame2", "frame1", "frame02b"]
    for i, name in enumerate(names):
        Image.fromarray(np.full((6, 8, 3), i * 40, dtype=np.uint8)).save(folder / f"{name}.png")
    Image.fromarray(np.full((6, 8), 200, dtype=np.uint8), mode="L").save(folder / "frame3.png")
    Image.fromarray(np.full((6, 8, 4), 90, dtype=np.uint8), mode="RGBA").save(folder / "frame4.png")
    (folder / "notes.txt").write_text("not a frame")
    (folder / ".hidden.png").write_bytes(b"junk")

    reader = open_frames(folder)
    info = reader.info
    assert info.kind == "folder" and info.fps == 24.0
    assert (info.width, info.height) == (8, 6)
    assert info.frame_names == ("frame1", "frame2", "frame02b", "frame3", "frame4", "frame10")
    assert info.num_frames == 6
    frames = list(reader)
    assert [f.name for f in frames] == list(info.frame_names)
    assert all(f.image.shape == (6, 8, 3) and f.image.dtype == np.uint8 for f in frames)
    assert frames[3].image[0, 0].tolist() == [200, 200, 200]  # grayscale -> RGB
    assert frames[4].image[0, 0].tolist() == [90, 90, 90]  # RGBA -> RGB
    assert reader.frame_name(5) == "frame10"
    assert reader.count_frames() == 6


def test_natural_key_orders_numbers_numerically():
    assert sorted(["img10", "img9", "img100", "img1"], key=natural_key) == ["img1", "img9", "img10", "img100"]


def test_folder_with_a_frame_of_another_size_names_it(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((6, 8, 3), dtype=np.uint8)).save(folder / f"{i:03d}.jpg")
    Image.fromarray(np.zeros((7, 8, 3), dtype=np.uint8)).save(folder / "003.jpg")
    with pytest.raises(InputError, match=r"003\.jpg.*8x7.*8x6"):
        open_frames(folder)


def test_folder_with_duplicate_frame_names(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for suffix in (".png", ".jpg"):
        Image.fromarray(np.zeros((6, 8, 3), dtype=np.uint8)).save(folder / f"00001{suffix}")
    with pytest.raises(InputError, match="00001"):
        open_frames(folder)


def test_corrupt_frame_in_folder_names_it(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(np.zeros((6, 8, 3), dtype=np.uint8)).save(folder / "001.png")
    (folder / "002.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"002\.png"):
        open_frames(folder)


def test_empty_folder(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "readme.txt").write_text("no frames here")
    with pytest.raises(InputError, match="empty.*no frame images"):
        open_frames(folder)


def test_text_file_named_mp4(tmp_path):
    fake = tmp_path / "x.mp4"
    fake.write_text("this is not a video\n" * 20)
    with pytest.raises(InputError, match=r"x\.mp4"):
        open_frames(fake)


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match=r"nope\.mp4.*no such file"):
        open_frames(tmp_path / "nope.mp4")


def test_single_image_file_is_rejected_with_a_hint(tmp_path):
    image = tmp_path / "one.png"
    Image.fromarray(np.zeros((6, 8, 3), dtype=np.uint8)).save(image)
    with pytest.raises(InputError, match="folder"):
        FrameReader(image)


# ------------------------------------------------------------------ damaged videos (issue 5)

SAMPLE_VIDEO = Path(__file__).resolve().parents[1] / "src" / "vossegcli" / "data" / "sample" / "sample.mp4"


def test_truncated_video_yields_every_decodable_frame_then_says_where_it_breaks(tmp_path):
    from vossegcli.io.video import TruncatedVideoError

    data = SAMPLE_VIDEO.read_bytes()  # moov atom first (faststart), like most downloads
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    reader = open_frames(cut)
    assert reader.info.num_frames == 72  # the container still announces the whole clip
    seen = []
    with pytest.raises(TruncatedVideoError) as err:
        for frame in reader:
            seen.append(frame.index)
    good = err.value.frames_read
    assert seen == list(range(good)) and 10 < good < 72 and err.value.expected == 72
    message = str(err.value)
    assert "\n" not in message and len(message) < 400
    assert f"cut.mp4: unreadable from frame {good} on (file truncated or corrupt" in message
    assert _open_handles(cut) == 0


def test_concealed_damage_is_a_warning_not_an_error(tmp_path):
    data = bytearray(SAMPLE_VIDEO.read_bytes())
    data[len(data) // 2: len(data) // 2 + 4000] = bytes(4000)
    video = tmp_path / "scratched.mp4"
    video.write_bytes(bytes(data))
    reader = open_frames(video)
    frames = list(reader)
    assert len(frames) == 72  # as many as stored: an undecodable frame is stood in for, never dropped
    assert len(reader.warnings) == 1 and "scratched.mp4" in reader.warnings[0] and "decoding error" in reader.warnings[0]
    assert "replaced by the frame before" in reader.warnings[0]
    assert list(open_frames(SAMPLE_VIDEO).frames()) and open_frames(SAMPLE_VIDEO).warnings == []


def test_ffmpeg_messages_do_not_reach_the_terminal(tmp_path, capfd):
    data = SAMPLE_VIDEO.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError):
        list(open_frames(cut))
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_video_with_no_frames(tmp_path):
    video = tmp_path / "none.mp4"
    subprocess_args = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                       "color=c=red:s=64x48:r=25", "-frames:v", "0", "-c:v", "libx264", str(video)]
    import subprocess

    subprocess.run(subprocess_args, check=True)
    with pytest.raises(InputError, match=r"none\.mp4: the file holds no video frames"):
        open_frames(video)


def test_one_frame_video(tmp_path):
    video = tmp_path / "one.mp4"
    write_mp4(video, n=1)
    reader = open_frames(video)
    assert reader.info.num_frames == 1
    assert [f.index for f in reader] == [0] and reader.warnings == []


def test_frames_from_a_start_index(tmp_path):
    video = tmp_path / "clip.mp4"
    levels = write_mp4(video, n=8)
    frames = list(open_frames(video).frames(5))
    assert [f.index for f in frames] == [5, 6, 7] and [f.name for f in frames] == ["00005", "00006", "00007"]
    assert abs(float(frames[0].image.mean()) - levels[5]) < 4
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((6, 8, 3), i * 50, np.uint8)).save(folder / f"f{i}.png")
    assert [f.name for f in open_frames(folder).frames(2)] == ["f2", "f3"]
