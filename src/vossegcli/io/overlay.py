"""Masks out as a video: colour the segmented objects over the input frames, encode H.264.

The output is libx264 / yuv420p (plays in browsers, QuickTime and phones), with one output
frame per input frame at the input frame's own timestamp (variable frame rates included). yuv420p needs even dimensions, so an
odd width or height is padded by one pixel (edge pixels repeated) - never rescaled.
It is written to a temporary file next to ``out_path`` and renamed at the end, so a failure
never leaves a partial video behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import UnidentifiedImageError

from vossegcli.errors import InputError, MaskError, OutputError, first_line
from vossegcli.files import PendingFile
from vossegcli.io.palette import VOID_ID, NotAnIdImage, davis_palette, read_label_png
from vossegcli.io.video import FOLDER_FPS, open_frames

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
    path: Path, frames: Iterable[tuple[np.ndarray, float | None]], size: tuple[int, int], fps: float, *,
    time_base: Fraction | None = None, crf: int = DEFAULT_CRF, preset: str = "medium", container: str | None = None,
) -> int:
    """Encode ``(image, time)`` pairs - (H, W, 3) uint8 RGB of ``size`` = (w, h), presentation time in
    seconds or None - into ``path`` as H.264/yuv420p (libx264, ``crf``, ``preset``, +faststart).

    Each frame keeps its time (relative to the first frame's), so a variable-frame-rate input
    comes out with the same timing; a frame without one is placed at ``index / fps``.
    ``time_base``: the unit timestamps are stored in (default: 1 / ``fps``, made exact for
    NTSC-style rates); ``container``: ffmpeg's format name (default: from the file name).
    Returns the number of frames. The file is closed if ``frames`` raises.
    """
    return encode_video(path, frames, size, fps, time_base=time_base, container=container,
                        codec="libx264", pix_fmt="yuv420p", options={"crf": str(crf), "preset": preset})


def encode_video(
    path: Path, frames: Iterable[tuple[np.ndarray, float | None]], size: tuple[int, int], fps: float, *,
    codec: str, pix_fmt: str, options: dict[str, str] | None = None, time_base: Fraction | None = None,
    container: str | None = None, image_format: str = "rgb24",
) -> int:
    """:func:`encode_mp4` with any PyAV encoder: ``codec`` writing ``pix_fmt`` from (H, W, C) uint8
    frames in ``image_format`` ("rgb24"; "rgba" for a codec that keeps alpha, e.g. ProRes 4444)."""
    import av

    rate = Fraction(fps).limit_denominator(1001)
    unit = time_base or 1 / rate
    out = av.open(str(path), "w", format=container, options={"movflags": "+faststart"})
    written = 0
    try:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = pix_fmt
        stream.time_base = unit
        stream.codec_context.time_base = unit
        stream.options = dict(options or {})
        start: float | None = None
        last_pts = -1
        for image, t in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=image_format)
            if t is None:
                pts = round(written / rate / unit)
            else:
                start = t if start is None else start
                pts = round((t - start) / unit)
            frame.pts = max(pts, last_pts + 1)  # strictly increasing, as the muxer requires
            frame.time_base = unit
            last_pts = frame.pts
            for packet in stream.encode(frame):
                out.mux(packet)
            written += 1
        for packet in stream.encode(None):
            out.mux(packet)
    finally:
        out.close()
    return written


#: Colours an object may be switched to when its own is too close to its mean colour.
CONTRAST_COLOURS = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (255, 255, 255), (0, 0, 0),
], dtype=np.float32)
#: An object's colour closer than this (RGB distance) to the object's own mean colour is replaced.
MIN_CONTRAST = 110.0


def contrasting_colour(mean: np.ndarray, colour: np.ndarray, taken: list[np.ndarray]) -> np.ndarray:
    """``colour`` if it stands out from an object of ``mean`` RGB colour, else the candidate of
    :data:`CONTRAST_COLOURS` farthest from it (and at least :data:`MIN_CONTRAST` from the colours
    other objects already use, when one is)."""
    mean = np.asarray(mean, np.float32)
    if np.linalg.norm(colour.astype(np.float32) - mean) >= MIN_CONTRAST:
        return colour
    candidates = [c for c in CONTRAST_COLOURS if all(np.linalg.norm(c - t) >= MIN_CONTRAST for t in taken)]
    candidates = candidates or list(CONTRAST_COLOURS)
    best = max(candidates, key=lambda c: float(np.linalg.norm(c - mean)))
    return best.astype(np.uint8)


def write_overlay(
    input_path: Path,
    masks_dir: Path,
    out_path: Path,
    alpha: float = 0.5,
    contours: bool = True,
    palette: list[int] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    fps: float | None = None,
    notes: list[str] | None = None,
    diagnostics: bool = False,
    frame_numbers: bool = False,
) -> int:
    """Blend ``masks_dir/<frame_name>.png`` over every input frame; write an H.264 mp4 with one
    frame per input frame at the input's timestamps (a video's own, variable rates included).

    ``contours``: outline each object on top of its tinted fill; ``palette``: colours per id, used
    as given; default the palette of the first mask PNG (else DAVIS's), where each object whose
    colour is too close to its own mean colour (a red car in red) gets a contrasting one;
    ``fps``: the rate a frame folder plays at (default 24; videos keep their timing).
    ``progress(done, total)`` is called after each frame (total may be None for videos);
    ``notes``: gets the input's lines worth saying once (e.g. "variable frame rate: ...");
    ``diagnostics``: draw each object's status (tracked / uncertain / lost / absent) and similarity
    from ``masks_dir/diagnostics.jsonl`` in a legend, and mark scene cuts;
    ``frame_numbers``: write each frame's index and mask file name in the bottom-left corner (the
    number a correction or a second mask is given with: ``--mask N:fix.png``).
    Returns the number of frames written.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("alpha must be within 0..1")
    masks_dir = Path(masks_dir)
    out_path = Path(out_path)
    if not masks_dir.is_dir():
        raise MaskError(f"{masks_dir}: no such mask folder; pass the folder written by `vosseg segment`")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive, not {fps}")
    reader = open_frames(input_path, folder_fps=fps or FOLDER_FPS)
    info = reader.info
    if fps is not None and info.kind == "video":
        reader.close()
        raise InputError(
            f"{input_path}: a video keeps its own timestamps; fps=... is for folders of frames, leave it out"
        )
    size = (info.width, info.height)
    if info.frame_names is not None:  # folder: check every mask exists before encoding anything
        for name in info.frame_names:
            _require(masks_dir / f"{name}.png")
    else:
        _require(masks_dir / f"{reader.frame_name(0)}.png")

    records: Iterator[dict] | None = None
    if diagnostics:
        from vossegcli.io.diagnostics_file import read_records
        from vossegcli.io.run_folder import RunFolder

        diag_path = RunFolder(masks_dir).diagnostics_file
        if not diag_path.is_file():
            reader.close()
            raise MaskError(f"{diag_path}: not found; run `vosseg segment` into {masks_dir} again (it writes the "
                            "diagnostics), or leave out --diagnostics")
        records = read_records(diag_path)
    pad_w, pad_h = info.width % 2, info.height % 2
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        pending = PendingFile(out_path, suffix=(out_path.suffix or ".mp4") + ".part")
    except OSError as exc:
        raise OutputError(f"{out_path}: cannot write here ({exc.strerror or exc}); choose another output path") from exc
    container = {".mov": "mov", ".mkv": "matroska", ".m4v": "mp4"}.get(out_path.suffix.lower(), "mp4")

    pending_record: list[dict] = []  # a record read ahead (for a frame after the current one)

    def blended() -> Iterator[tuple[np.ndarray, float | None]]:
        colours = None
        seen: set[int] = set()  # ids whose colour is settled (on the first frame they appear in)
        with reader:
            for done, frame in enumerate(reader, 1):
                labels, mask_palette = _read_mask(masks_dir / f"{frame.name}.png", size)
                if colours is None:
                    colours = _full_palette(palette if palette is not None else mask_palette)
                if palette is None:
                    for i in np.flatnonzero(np.bincount(labels.ravel(), minlength=256)).tolist():  # ids present
                        if i in seen or i in (0, VOID_ID):
                            continue
                        taken = [colours[j].astype(np.float32) for j in seen]
                        colours[i] = contrasting_colour(frame.image[labels == i].mean(axis=0), colours[i], taken)
                        seen.add(i)
                image = blend(frame.image, labels, colours, alpha, contours)
                if records is not None:
                    record = _record_for(records, done - 1, pending_record)
                    if record is not None:
                        image = draw_diagnostics(image, record, colours)
                if frame_numbers:
                    image = draw_frame_number(image, frame.index, f"{frame.name}.png")
                if pad_w or pad_h:
                    image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
                yield image, frame.time
                if progress is not None:
                    progress(done, info.num_frames)
        if notes is not None:
            notes.extend(reader.notes)

    frames = blended()
    try:
        written = encode_mp4(pending.tmp, frames, (info.width + pad_w, info.height + pad_h), info.fps,
                             time_base=info.time_base, container=container)
        if written == 0:
            raise MaskError(f"{input_path}: no frames to overlay")
        pending.commit()
    except OSError as exc:
        raise OutputError(f"{out_path}: writing the video failed ({first_line(exc)}); check disk space and permissions") from exc
    finally:
        frames.close()  # stops the decoder after a failure
        pending.discard()
    return written


STATUS_COLOURS = {"tracked": (40, 170, 60), "uncertain": (220, 170, 0), "lost": (230, 110, 0), "absent": (200, 30, 30)}


def _record_for(records: Iterator[dict], frame: int, pending: list[dict]) -> dict | None:
    """The diagnostics record of ``frame`` from the in-order stream (frames before the first
    object have none)."""
    while True:
        record = pending.pop() if pending else next(records, None)
        if record is None:
            return None
        if record["frame"] == frame:
            return record
        if record["frame"] > frame:
            pending.append(record)
            return None


def draw_diagnostics(image: np.ndarray, record: dict, colours: np.ndarray) -> np.ndarray:
    """A legend in the top-left corner: per object its colour, id, status and template similarity;
    "SCENE CUT" on a frame after a detected cut. (H, W, 3) uint8 in and out."""
    from PIL import Image, ImageDraw

    font, size = _font(image.shape[0])
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    lines = []
    if record.get("scene_cut"):
        lines.append(("SCENE CUT", (255, 255, 255), (200, 30, 30)))
    for key, o in record["objects"].items():
        text = f"{key}: {o['status']}  sim {o['similarity']:.2f}" + ("  re-found" if o.get("refound") else "") \
            + ("  (backward)" if o.get("backward") else "")
        lines.append((text, tuple(int(c) for c in colours[int(key)]), STATUS_COLOURS.get(o["status"], (80, 80, 80))))
    y = 4
    for text, swatch, tag in lines:
        box = draw.textbbox((size + 12, y), text, font=font)
        draw.rectangle((2, y - 2, box[2] + 4, box[3] + 2), fill=(0, 0, 0))
        draw.rectangle((6, y, 6 + size, y + size), fill=swatch)
        draw.rectangle((size + 8, y, size + 10, y + size), fill=tag)
        draw.text((size + 12, y), text, fill=(255, 255, 255), font=font)
        y = box[3] + 6
    return np.asarray(canvas)


def _font(height: int):
    """PIL's default font at a size that reads on a frame ``height`` pixels high, and that size."""
    from PIL import ImageFont

    size = max(12, height // 36)
    try:
        return ImageFont.load_default(size=size), size
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default(), size


def draw_frame_number(image: np.ndarray, index: int, name: str) -> np.ndarray:
    """"frame N · NAME" in white on black in the bottom-left corner. (H, W, 3) uint8 in and out."""
    from PIL import Image, ImageDraw

    font, size = _font(image.shape[0])
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    text = f"frame {index} · {name}"
    box = draw.textbbox((0, 0), text, font=font)
    x, top = 6, image.shape[0] - (box[3] - box[1]) - 8
    draw.rectangle((x - 4, top - 3, x + box[2] + 4, top + box[3] - box[1] + 3), fill=(0, 0, 0))
    draw.text((x, top - box[1]), text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def _require(path: Path) -> None:
    if not path.is_file():
        raise MaskError(
            f"{path}: missing mask for this frame; run `vosseg segment` into {path.parent} first, "
            "or pass the folder that holds the masks"
        )
