"""Masks out as a video: colour the segmented objects over the input frames, encode H.264.

The output is libx264 / yuv420p (plays in browsers, QuickTime and phones), at the input's
frame rate and with one output frame per input frame. yuv420p needs even dimensions, so an
odd width or height is padded by one pixel (edge pixels repeated) - never rescaled.
It is written to a temporary file next to ``out_path`` and renamed at the end, so a failure
never leaves a partial video behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import UnidentifiedImageError

from vossegcli.errors import MaskError, OutputError, first_line
from vossegcli.io.palette import VOID_ID, NotAnIdImage, PendingFile, davis_palette, read_label_png
from vossegcli.io.video import open_frames

CONTOUR_WIDTH = 2
DEFAULT_CRF = 18


def _read_mask(path: Path, size: tuple[int, int]) -> tuple[np.ndarray, list[int] | None]:
    """(H, W) uint8 ids and the PNG's palette (None unless it is a palette PNG)."""
    _require(path)
    try:
        labels, palette = read_label_png(path, with_palette=True)
    except NotAnIdImage as exc:
        raise MaskError(
            f"{path}: a {exc.mode} image, not a mask of object ids; pass the folder "
            "written by `vosseg segment` (palette PNGs)"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MaskError(f"{path}: not a readable PNG ({exc}); re-run `vosseg segment`") from exc
    if (labels.shape[1], labels.shape[0]) != size:
        raise MaskError(
            f"{path}: {labels.shape[1]}x{labels.shape[0]} but the video frames are "
            f"{size[0]}x{size[1]}; use the masks made for this video"
        )
    return labels, palette


def _full_palette(palette: list[int] | None) -> np.ndarray:
    davis = davis_palette()
    pal = list(palette[:768]) if palette else []
    pal = pal + davis[len(pal):]
    return np.array(pal, dtype=np.uint8).reshape(256, 3)


def contour_mask(labels: np.ndarray, width: int = CONTOUR_WIDTH) -> np.ndarray:
    """Pixels of an object that lie within ``width`` px of a different label (its inner outline).

    Separable erosion of "same label as me" with a (2w+1) square, in numpy. Frame borders do
    not count as a boundary.
    """
    h, w = labels.shape
    padded = np.pad(labels, width, mode="edge")
    # rows: same label in the whole horizontal window
    same_h = np.ones((h + 2 * width, w), dtype=bool)
    centre_cols = padded[:, width:width + w]
    for d in range(-width, width + 1):
        if d:
            same_h &= padded[:, width + d:width + d + w] == centre_cols
    centre = labels
    interior = np.ones((h, w), dtype=bool)
    for d in range(-width, width + 1):
        rows = slice(width + d, width + d + h)
        interior &= same_h[rows] & (padded[rows, width:width + w] == centre)
    return (labels != 0) & ~interior


def blend(image: np.ndarray, labels: np.ndarray, colours: np.ndarray, alpha: float, contours: bool) -> np.ndarray:
    """Colour objects (ids 1..254) over an RGB frame; optionally draw opaque outlines."""
    out = image.astype(np.float32)
    objects = (labels != 0) & (labels != VOID_ID)
    if objects.any():
        tint = colours[labels].astype(np.float32)
        out[objects] = (1.0 - alpha) * out[objects] + alpha * tint[objects]
        if contours:
            edge = contour_mask(labels) & objects
            out[edge] = tint[edge]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def encode_mp4(
    path: Path, frames: Iterable[np.ndarray], size: tuple[int, int], fps: float, *,
    crf: int = DEFAULT_CRF, preset: str = "medium", container: str | None = None,
) -> int:
    """Encode (H, W, 3) uint8 RGB frames of ``size`` = (w, h) into ``path`` as H.264/yuv420p (libx264,
    ``crf``, ``preset``, +faststart); ``container``: ffmpeg's -f (default: from the file name).
    Returns the number of frames. ffmpeg is stopped if ``frames`` raises."""
    import imageio_ffmpeg

    output_params = ["-crf", str(crf), "-preset", preset, "-movflags", "+faststart"]
    if container:
        output_params += ["-f", container]
    writer = imageio_ffmpeg.write_frames(
        str(path), size, fps=float(fps), codec="libx264", pix_fmt_out="yuv420p", quality=None,
        macro_block_size=1, ffmpeg_log_level="error", output_params=output_params,
    )
    written = 0
    try:
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
            written += 1
        writer.close()  # waits for ffmpeg to finish the file
    finally:
        try:
            writer.close()  # stops ffmpeg after a failure (a no-op once closed)
        except Exception:
            pass
    return written


def write_overlay(
    input_path: Path,
    masks_dir: Path,
    out_path: Path,
    alpha: float = 0.5,
    contours: bool = False,
    palette: list[int] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> int:
    """Blend ``masks_dir/<frame_name>.png`` over every input frame; write an H.264 mp4.

    ``palette``: colours per id; default the palette of the first mask PNG, else DAVIS.
    ``progress(done, total)`` is called after each frame (total may be None for videos).
    Returns the number of frames written.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("alpha must be within 0..1")
    masks_dir = Path(masks_dir)
    out_path = Path(out_path)
    if not masks_dir.is_dir():
        raise MaskError(f"{masks_dir}: no such mask folder; pass the folder written by `vosseg segment`")
    reader = open_frames(input_path)
    info = reader.info
    size = (info.width, info.height)
    if info.frame_names is not None:  # folder: check every mask exists before encoding anything
        for name in info.frame_names:
            _require(masks_dir / f"{name}.png")
    else:
        _require(masks_dir / f"{reader.frame_name(0)}.png")

    pad_w, pad_h = info.width % 2, info.height % 2
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        pending = PendingFile(out_path, suffix=(out_path.suffix or ".mp4") + ".part")
    except OSError as exc:
        raise OutputError(f"{out_path}: cannot write here ({exc.strerror or exc}); choose another output path") from exc
    container = {".mov": "mov", ".mkv": "matroska", ".m4v": "mp4"}.get(out_path.suffix.lower(), "mp4")

    def blended() -> Iterator[np.ndarray]:
        colours = None
        with reader:
            for done, frame in enumerate(reader, 1):
                labels, mask_palette = _read_mask(masks_dir / f"{frame.name}.png", size)
                if colours is None:
                    colours = _full_palette(palette if palette is not None else mask_palette)
                image = blend(frame.image, labels, colours, alpha, contours)
                if pad_w or pad_h:
                    image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
                yield image
                if progress is not None:
                    progress(done, info.num_frames)

    frames = blended()
    try:
        written = encode_mp4(pending.tmp, frames, (info.width + pad_w, info.height + pad_h), info.fps, container=container)
        if written == 0:
            raise MaskError(f"{input_path}: no frames to overlay")
        pending.commit()
    except OSError as exc:
        raise OutputError(f"{out_path}: writing the video failed ({first_line(exc)}); check disk space and permissions") from exc
    finally:
        frames.close()  # stops the decoder after a failure
        pending.discard()
    return written


def _require(path: Path) -> None:
    if not path.is_file():
        raise MaskError(
            f"{path}: missing mask for this frame; run `vosseg segment` into {path.parent} first, "
            "or pass the folder that holds the masks"
        )
