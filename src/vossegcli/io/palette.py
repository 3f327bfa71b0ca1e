"""Indexed (palette) PNG masks: the DAVIS palette, reading and atomic writing.

A label map is an (H, W) uint8 array of object ids, 0 = background. Written masks are
single-channel palette PNGs, which is what the DAVIS evaluation code reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vossegcli.files import atomic_write

#: DAVIS's "void" label (object outlines, unlabelled pixels): not an object.
VOID_ID = 255


def davis_palette() -> list[int]:
    """The 256-colour DAVIS/PASCAL VOC palette as a flat list of 768 ints (R, G, B, R, G, B, ...)."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.extend((r, g, b))
    return palette


def write_label_png(path: Path, labels: np.ndarray, palette: list[int] | None = None, mode: int | None = None) -> None:
    """Write an (H, W) id map as a palette PNG, atomically (temporary name, then rename).

    A reader never sees a half-written file: a killed process leaves either the old file,
    nothing, or a stray ``.tmp`` file in the same folder, never a truncated PNG. ``mode``: the
    file's permissions (default: as the umask says).
    """
    path = Path(path)
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError("labels must be ids in 0..255")
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(palette if palette is not None else davis_palette())
    atomic_write(path, lambda handle: image.save(handle, format="PNG"), mode)


#: Image modes that hold object ids: palette, 8-bit grayscale, 1-bit.
LABEL_MODES = ("P", "L", "1")


class NotAnIdImage(ValueError):
    """An image whose mode holds no object ids (RGB, grayscale with alpha, ...); ``mode`` says which."""

    def __init__(self, path: Path, mode: str):
        super().__init__(f"{path}: expected a palette or grayscale PNG of object ids, got mode {mode}")
        self.mode = mode


def read_ids(path: Path, modes: tuple[str, ...] = LABEL_MODES) -> tuple[np.ndarray, list[int] | None]:
    """The ids of an image as ``np.array(image)`` (1-bit images: bool) and its palette (None unless "P").

    Raises :class:`NotAnIdImage` for a mode not in ``modes``, and PIL's errors (OSError,
    UnidentifiedImageError, ValueError) for a missing or unreadable file.
    """
    with Image.open(path) as image:
        if image.mode not in modes:
            raise NotAnIdImage(path, image.mode)
        palette = image.getpalette() if image.mode == "P" else None
        return np.array(image), palette


def read_label_png(path: Path, with_palette: bool = False):
    """Read a palette or grayscale PNG of ids as an (H, W) uint8 array (1-bit: 0/255).

    With ``with_palette``: ``(labels, palette)``, the palette None unless it is a palette PNG.
    Raises ValueError (:class:`NotAnIdImage`) for other image modes.
    """
    ids, palette = read_ids(path)
    labels = ids.astype(np.uint8) * 255 if ids.dtype == np.bool_ else ids.astype(np.uint8, copy=False)
    return (labels, palette) if with_palette else labels
