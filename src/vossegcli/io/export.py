"""Cut-outs and formats editors use, from a folder of mask PNGs (``vosseg export``).

* ``rgba``: an RGBA PNG per frame — the input frame with the objects opaque and the rest transparent;
* ``prores``: the same as one video with alpha, Apple ProRes 4444 in a .mov (yuva444p10le: what
  Premiere, Resolve and Final Cut import with transparency);
* ``alpha``: a matte video per object, white object on black (H.264), ``object-<id>.mp4``;
* ``rle``: COCO run-length encoding, one JSON line per frame, ``{"frame", "name", "objects": {id:
  {"size": [h, w], "counts": "..."}}}`` — the compressed string of the COCO API (column-major runs,
  starting with background), so ``pycocotools.mask.decode`` reads it;
* ``boxes``: a CSV row per frame and object: ``frame,name,object,x,y,width,height,area`` (pixels; the
  box of the object's pixels, x/y of its top-left pixel).

``objects`` limits the export to some ids (rgba, prores: their union is opaque); ``feather`` softens
the alpha edges by a Gaussian of that radius in pixels (rgba, prores, alpha). Every file is written
under a temporary name and renamed when complete.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageFilter

from vossegcli.errors import InputError, MaskError, OutputError
from vossegcli.files import PendingFile, atomic_write
from vossegcli.io.overlay import encode_video
from vossegcli.io.palette import VOID_ID, read_label_png
from vossegcli.io.run_folder import recorded_input
from vossegcli.io.video import natural_key, open_frames

KINDS = ("rgba", "prores", "alpha", "rle", "boxes")
#: What each kind writes by default under the mask folder's parent: a folder or a file name.
DEFAULT_NAMES = {"rgba": "{stem}-rgba", "prores": "{stem}-rgba.mov", "alpha": "{stem}-mattes", "rle": "{stem}.rle.jsonl",
                 "boxes": "{stem}-boxes.csv"}
NEEDS_FRAMES = ("rgba", "prores")


# -- COCO run-length encoding ------------------------------------------------------------------------
def rle_counts(mask: np.ndarray) -> list[int]:
    """(H, W) bool → run lengths in column-major order, starting with a run of background (maybe 0)."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    edges = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(edges).tolist()
    return ([0] + counts) if flat.size and flat[0] else counts


def encode_rle(mask: np.ndarray) -> dict:
    """(H, W) bool → COCO's compressed RLE ``{"size": [h, w], "counts": str}``: each count (minus the
    count two before it, from the third on) in 5-bit groups, low first, as characters from '0' (48);
    a group's bit 5 says another follows, and the last group's bit 4 carries the sign."""
    counts = rle_counts(mask)
    out = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: a negative delta ends at -1
            more = (x != -1) if c & 0x10 else (x != 0)
            out.append(chr(48 + (c | 0x20 if more else c)))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": "".join(out)}


def decode_rle(rle: dict) -> np.ndarray:
    """COCO compressed RLE (as :func:`encode_rle` writes) → (H, W) bool."""
    h, w = rle["size"]
    text, counts, p = rle["counts"], [], 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    flat = np.zeros(h * w, dtype=bool)
    position, value = 0, False
    for count in counts:
        flat[position:position + count] = value
        position += count
        value = not value
    return flat.reshape((h, w), order="F")


# -- reading the mask folder ---------------------------------------------------------------------------
def mask_files(masks_dir: Path) -> list[Path]:
    """The frame masks of a ``vosseg segment`` folder, in frame order (hidden files left out)."""
    masks_dir = Path(masks_dir)
    if not masks_dir.is_dir():
        raise MaskError(f"{masks_dir}: no such mask folder; pass the folder written by `vosseg segment`")
    files = sorted((p for p in masks_dir.glob("*.png") if not p.name.startswith(".")), key=lambda p: natural_key(p.stem))
    if not files:
        raise MaskError(f"{masks_dir}: no mask PNGs here; pass the folder written by `vosseg segment`")
    return files


def recorded_input_path(masks_dir: Path) -> Path | None:
    """The input a ``vosseg segment`` run wrote ``masks_dir`` from (its run record), if it still exists."""
    recorded = recorded_input(masks_dir)
    path = Path(recorded["path"]) if recorded and recorded.get("path") else None
    return path if path is not None and path.exists() else None


def _ids(labels: np.ndarray) -> list[int]:
    return [i for i in np.flatnonzero(np.bincount(labels.ravel(), minlength=256)).tolist() if i not in (0, VOID_ID)]


def _alpha(labels: np.ndarray, ids: Sequence[int] | None, feather: float) -> np.ndarray:
    """(H, W) uint8 0..255: the objects ``ids`` (None: every object) opaque, feathered by ``feather`` px."""
    on = (labels > 0) & (labels != VOID_ID) if ids is None else np.isin(labels, list(ids))
    alpha = on.astype(np.uint8) * 255
    if feather > 0:
        alpha = np.asarray(Image.fromarray(alpha).filter(ImageFilter.GaussianBlur(feather)))
    return alpha


# -- the writers -----------------------------------------------------------------------------------------
def export(
    masks_dir: Path, kind: str, out: Path, *, input_path: Path | None = None, objects: Sequence[int] | None = None,
    feather: float = 0.0, progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write ``kind`` (one of :data:`KINDS`) for the masks in ``masks_dir`` to ``out`` (a folder for
    rgba and alpha, a file otherwise). ``input_path``: the video or frame folder that was segmented
    (rgba, prores; default: the one the run record names). Returns what was written:
    ``{"kind", "out", "frames", "objects", "files"}``."""
    if kind not in KINDS:
        raise InputError(f"--as {kind}: choose one of {', '.join(KINDS)}")
    if feather < 0:
        raise InputError(f"--feather {feather}: must be 0 or more pixels")
    files = mask_files(masks_dir)
    out = Path(out)
    wanted = None if not objects else sorted(set(objects))
    input_path = input_path or recorded_input_path(masks_dir)  # (mattes take its frame rate)
    if kind in NEEDS_FRAMES:
        if input_path is None:
            raise InputError(f"{masks_dir}: the video it was segmented from is not known here; pass it with --input VIDEO")
    if wanted is not None:  # checked before anything is written
        present = sorted({i for _, _, labels in _labels(files) for i in _ids(labels)})
        missing = sorted(set(wanted) - set(present))
        if missing:
            raise MaskError(f"{masks_dir}: no object {', '.join(map(str, missing))} in these masks; "
                            f"the ids are {', '.join(map(str, present)) or 'none'}")
    writer = {"rgba": _rgba, "prores": _prores, "alpha": _mattes, "rle": _rle, "boxes": _boxes}[kind]
    try:
        result = writer(files, out, input_path=input_path, objects=wanted, feather=feather, progress=progress)
    except OSError as exc:
        raise OutputError(f"{out}: cannot write here ({exc.strerror or exc}); choose another --out") from exc
    return {"kind": kind, "out": str(out), **result}


def _labels(files: list[Path]) -> Iterator[tuple[int, Path, np.ndarray]]:
    for index, path in enumerate(files):
        yield index, path, read_label_png(path)


def _frames_with_masks(files: list[Path], input_path: Path) -> Iterator[tuple[np.ndarray, np.ndarray, float | None, str]]:
    """(RGB frame, its labels, time, name) for every mask, the frames read in step with the masks by name."""
    by_name = {p.stem: p for p in files}
    mh, mw = read_label_png(files[0]).shape
    with open_frames(input_path) as reader:
        if (reader.info.width, reader.info.height) != (mw, mh):
            raise MaskError(f"{files[0]}: {mw}x{mh} masks for {reader.info.width}x{reader.info.height} frames of "
                            f"{input_path}; pass the video they were segmented from with --input")
        used = 0
        for frame in reader:
            path = by_name.get(frame.name)
            if path is None:
                continue
            used += 1
            yield frame.image, read_label_png(path), frame.time, frame.name
        if used < len(files):
            raise MaskError(f"{Path(files[0]).parent}: {len(files) - used} mask(s) have no frame in {input_path}; "
                            "pass the video they were segmented from with --input")


def _rgba(files, out, *, input_path, objects, feather, progress) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    seen: set[int] = set()
    count = 0
    for count, (image, labels, _, name) in enumerate(_frames_with_masks(files, input_path), 1):
        seen.update(i for i in _ids(labels) if objects is None or i in objects)
        rgba = np.dstack([image, _alpha(labels, objects, feather)])
        buffer = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
        atomic_write(out / f"{name}.png", lambda handle, data=buffer.getvalue(): handle.write(data))
        if progress:
            progress(count, len(files))
    return {"frames": count, "objects": sorted(seen), "files": count}


def _prores(files, out, *, input_path, objects, feather, progress) -> dict:
    seen: set[int] = set()
    with open_frames(input_path) as reader:
        info = reader.info
    if info.width % 2 or info.height % 2:
        raise InputError(f"{input_path}: ProRes needs an even width and height, not {info.width}x{info.height}; "
                         "use --as rgba (PNGs) instead")

    def frames() -> Iterator[tuple[np.ndarray, float | None]]:
        for done, (image, labels, t, _) in enumerate(_frames_with_masks(files, input_path), 1):
            seen.update(i for i in _ids(labels) if objects is None or i in objects)
            yield np.dstack([image, _alpha(labels, objects, feather)]), t
            if progress:
                progress(done, len(files))

    out.parent.mkdir(parents=True, exist_ok=True)
    pending = PendingFile(out, suffix=".part.mov")
    try:
        n = encode_video(pending.tmp, frames(), (info.width, info.height), info.fps, codec="prores_ks",
                         pix_fmt="yuva444p10le", options={"profile": "4444"}, container="mov", image_format="rgba",
                         time_base=info.time_base)
        pending.commit()
    finally:
        pending.discard()
    return {"frames": n, "objects": sorted(seen), "files": 1}


def _mattes(files, out, *, input_path, objects, feather, progress) -> dict:
    ids = sorted({i for _, _, labels in _labels(files) for i in _ids(labels)})
    ids = [i for i in ids if objects is None or i in objects]
    out.mkdir(parents=True, exist_ok=True)
    h, w = read_label_png(files[0]).shape
    size = (w + w % 2, h + h % 2)  # H.264 in yuv420p needs even sides: one black row/column added
    fps = 24.0
    if input_path is not None:
        with open_frames(input_path) as reader:
            fps = reader.info.fps or fps
    for k, object_id in enumerate(ids):
        def frames(object_id=object_id) -> Iterable[tuple[np.ndarray, float | None]]:
            for _, _, labels in _labels(files):
                matte = np.zeros((size[1], size[0]), np.uint8)
                matte[:h, :w] = _alpha(labels, [object_id], feather)
                yield np.repeat(matte[..., None], 3, axis=2), None

        target = out / f"object-{object_id}.mp4"
        pending = PendingFile(target, suffix=".part.mp4")
        try:
            encode_video(pending.tmp, frames(), size, fps, codec="libx264", pix_fmt="yuv420p", container="mp4",
                         options={"crf": "12", "preset": "medium"})
            pending.commit()
        finally:
            pending.discard()
        if progress:
            progress(k + 1, len(ids))
    return {"frames": len(files), "objects": ids, "files": len(ids)}


def _rle(files, out, *, input_path, objects, feather, progress) -> dict:
    seen: set[int] = set()
    lines = []
    for index, path, labels in _labels(files):
        ids = [i for i in _ids(labels) if objects is None or i in objects]
        seen.update(ids)
        lines.append(json.dumps({"frame": index, "name": path.stem,
                                 "objects": {str(i): encode_rle(labels == i) for i in ids}}) + "\n")
        if progress:
            progress(index + 1, len(files))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda handle: handle.write("".join(lines).encode()))
    return {"frames": len(files), "objects": sorted(seen), "files": 1}


def _boxes(files, out, *, input_path, objects, feather, progress) -> dict:
    seen: set[int] = set()
    text = io.StringIO()
    table = csv.writer(text, lineterminator="\n")
    table.writerow(["frame", "name", "object", "x", "y", "width", "height", "area"])
    for index, path, labels in _labels(files):
        for i in _ids(labels):
            if objects is not None and i not in objects:
                continue
            seen.add(i)
            ys, xs = np.nonzero(labels == i)
            x0, y0 = int(xs.min()), int(ys.min())
            table.writerow([index, path.stem, i, x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1, len(xs)])
        if progress:
            progress(index + 1, len(files))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda handle: handle.write(text.getvalue().encode()))
    return {"frames": len(files), "objects": sorted(seen), "files": 1}


__all__ = ["DEFAULT_NAMES", "KINDS", "decode_rle", "encode_rle", "export", "mask_files", "recorded_input_path", "rle_counts"]
