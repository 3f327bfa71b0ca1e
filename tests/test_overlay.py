"""io/overlay.py: masks blended over the frames, encoded as a playable H.264 mp4."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from vossegcli.errors import MaskError
from vossegcli.io.overlay import blend, contour_mask, write_overlay
from vossegcli.io.palette import davis_palette, write_label_png

GRAY = 128


def read_video(path: Path) -> tuple[dict, list[np.ndarray]]:
    gen = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(gen)
        w, h = meta["size"]
        frames = [np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3) for raw in gen]
    finally:
        gen.close()
    return meta, frames


def ffmpeg_stream_line(path: Path) -> str:
    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                         capture_output=True, text=True).stderr
    return next(line for line in out.splitlines() if "Video:" in line)


def gray_video(path: Path, n: int, size=(64, 48), fps=25.0) -> None:
    w, h = size
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, macro_block_size=1, ffmpeg_log_level="error")
    writer.send(None)
    for _ in range(n):
        writer.send(np.full((h, w, 3), GRAY, dtype=np.uint8))
    writer.close()


def masks_for(folder: Path, names, size=(64, 48)) -> None:
    folder.mkdir(exist_ok=True)
    w, h = size
    for name in names:
        labels = np.zeros((h, w), dtype=np.uint8)
        labels[8:24, 8:28] = 1
        labels[30:44, 36:60] = 2
        write_label_png(folder / f"{name}.png", labels)


def test_overlay_preserves_count_fps_size_and_colours(tmp_path):
    video = tmp_path / "in.mp4"
    gray_video(video, n=9, fps=25)
    masks_for(tmp_path / "masks", [f"{i:05d}" for i in range(9)])
    out = tmp_path / "out" / "overlay.mp4"
    calls = []
    n = write_overlay(video, tmp_path / "masks", out, alpha=0.5, progress=lambda d, t: calls.append((d, t)))
    assert n == 9
    assert calls[-1] == (9, 9) and len(calls) == 9
    meta, frames = read_video(out)
    assert len(frames) == 9
    assert meta["size"] == (64, 48)
    assert meta["fps"] == 25.0
    assert meta["codec"] == "h264"
    line = ffmpeg_stream_line(out)
    assert "h264" in line and "yuv420p" in line
    frame = frames[4].astype(int)
    # id 1 = DAVIS (128, 0, 0) blended 50/50 over gray 128 -> (128, 64, 64); id 2 -> (64, 128, 64)
    assert np.abs(frame[14, 16] - [128, 64, 64]).max() <= 8
    assert np.abs(frame[36, 48] - [64, 128, 64]).max() <= 8
    assert np.abs(frame[2, 60] - [GRAY] * 3).max() <= 4  # background untouched
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["overlay.mp4"]  # no temp files left


def test_overlay_of_odd_sized_folder_pads_without_rescaling(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    size = (45, 33)
    for name in ("a1", "a2", "a10"):
        Image.fromarray(np.full((33, 45, 3), GRAY, dtype=np.uint8)).save(frames / f"{name}.png")
    masks_for(tmp_path / "masks", ["a1", "a2", "a10"], size=size)
    out = tmp_path / "odd.mp4"
    assert write_overlay(frames, tmp_path / "masks", out, contours=True) == 3
    meta, decoded = read_video(out)
    assert len(decoded) == 3 and meta["size"] == (46, 34)  # padded by one pixel, not scaled
    assert meta["fps"] == 24.0
    frame = decoded[0].astype(int)
    assert np.abs(frame[8, 8] - [128, 0, 0]).max() <= 30  # contour: opaque object colour
    assert np.abs(frame[16, 18] - [128, 64, 64]).max() <= 10  # interior: blended


def test_missing_mask_raises_and_leaves_no_output(tmp_path):
    video = tmp_path / "in.mp4"
    gray_video(video, n=6)
    masks_for(tmp_path / "masks", [f"{i:05d}" for i in range(6) if i != 3])
    out = tmp_path / "out" / "overlay.mp4"
    with pytest.raises(MaskError, match=r"00003\.png"):
        write_overlay(video, tmp_path / "masks", out)
    assert not out.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_missing_mask_for_folder_input_is_caught_before_encoding(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ("f1", "f2"):
        Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(frames / f"{name}.png")
    masks_for(tmp_path / "masks", ["f1"], size=(16, 16))
    with pytest.raises(MaskError, match=r"f2\.png"):
        write_overlay(frames, tmp_path / "masks", tmp_path / "o.mp4")
    assert not (tmp_path / "o.mp4").exists()


def test_mask_of_another_size_raises(tmp_path):
    video = tmp_path / "in.mp4"
    gray_video(video, n=2)
    masks_for(tmp_path / "masks", ["00000", "00001"], size=(32, 24))
    with pytest.raises(MaskError, match=r"00000\.png: 32x24 but the video frames are 64x48"):
        write_overlay(video, tmp_path / "masks", tmp_path / "o.mp4")
    assert list(tmp_path.glob("*.mp4")) == [video]


def test_contour_mask_is_a_two_pixel_inner_outline():
    labels = np.zeros((12, 12), dtype=np.uint8)
    labels[2:10, 2:10] = 3
    edge = contour_mask(labels)
    assert edge[2:10, 2:10].sum() == 8 * 8 - 4 * 4  # 2-px ring inside the square
    assert not edge[4:8, 4:8].any() and not edge[labels == 0].any()


def test_blend_uses_given_palette_and_skips_void():
    image = np.full((4, 4, 3), 100, dtype=np.uint8)
    labels = np.array([[0, 1, 255, 2]] * 4, dtype=np.uint8)
    colours = np.array(davis_palette(), dtype=np.uint8).reshape(256, 3)
    colours[1] = (200, 200, 0)
    out = blend(image, labels, colours, alpha=0.5, contours=False)
    assert out[0, 0].tolist() == [100, 100, 100]
    assert out[0, 1].tolist() == [150, 150, 50]
    assert out[0, 2].tolist() == [100, 100, 100]  # 255 = void: not coloured
    assert out[0, 3].tolist() == [50, 114, 50]


def test_frame_numbers_are_written_in_the_bottom_left_corner_and_differ_per_frame(tmp_path):
    """--frame-numbers: white text on a black box in the bottom-left corner, different on frames 1
    and 12 (their numbers differ); the rest of the frame is the plain overlay."""
    from vossegcli.io.overlay import draw_frame_number

    video = tmp_path / "in.mp4"
    gray_video(video, n=13, size=(320, 240))
    masks_for(tmp_path / "masks", [f"{i:05d}" for i in range(13)], size=(320, 240))
    plain, numbered = tmp_path / "plain.mp4", tmp_path / "numbered.mp4"
    write_overlay(video, tmp_path / "masks", plain)
    write_overlay(video, tmp_path / "masks", numbered, frame_numbers=True)
    _, a = read_video(plain)
    _, b = read_video(numbered)
    corner = (slice(200, 240), slice(0, 200))
    assert all(np.abs(x[corner].astype(int) - y[corner]).max() > 100 for x, y in zip(a, b))  # text drawn
    assert np.abs(a[1][:150].astype(int) - b[1][:150]).max() <= 4  # elsewhere untouched
    assert (b[1][corner] > 200).all(axis=-1).any() and (b[1][corner] < 40).all(axis=-1).any()  # white on black
    assert np.abs(b[1][corner].astype(int) - b[12][corner]).max() > 100  # "frame 1" vs "frame 12"
    drawn = draw_frame_number(np.full((240, 320, 3), 128, np.uint8), 7, "00007.png")
    assert drawn.shape == (240, 320, 3) and (drawn[:150] == 128).all()
