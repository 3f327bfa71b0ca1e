"""Frames and masks in: open and check them, and scale between the input and the engine's size
(:class:`FrameSource`: a video's frames at the engine's size, read ahead in a thread)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from vossegcli.errors import MaskError
from vossegcli.io.masks import MaskSet, load_masks
from vossegcli.io.prefetch import Prefetch, prefetch
from vossegcli.io.video import Frame, FrameReader, open_frames
from vossegcli.run.options import DEFAULT_MAX_SIZE

#: Frames decoded (and scaled) ahead of the engine at most.
PREFETCH_FRAMES = 4

def load_inputs(input_path: Path, mask_args: Sequence[str], snap: bool = False) -> tuple[FrameReader, MaskSet]:
    """Open the frames and read and validate the masks against them (raises VossegError).

    ``snap``: map anti-aliased / JPEG-noisy mask values to the nearest object (``--snap-mask``).
    """
    reader = open_frames(input_path)
    info = reader.info
    masks = load_masks(
        mask_args,
        frame_size=(info.height, info.width),
        frame_names=info.frame_names,
        # A video's frame count is only a metadata estimate: check late masks against the real
        # end while decoding instead (see segment()).
        num_frames=info.num_frames if info.kind == "folder" else None,
        snap=snap,
    )
    if info.kind == "video" and info.num_frames:
        # Metadata estimates are off by a frame or two at most; allow that, check exactly later.
        late = [(path, frame) for path, frame in masks.files if frame >= info.num_frames + 2]
        if late:
            path, frame = late[0]
            raise MaskError(
                f"{path}: mask is for frame {frame} but {input_path} has about {info.num_frames} frames; "
                "give the mask as N:path.png with a frame inside the video"
            )
    return reader, masks


def internal_size(width: int, height: int, max_size: int | None) -> tuple[int, int]:
    """(width, height) the engine works at: the longest side at most ``max_size``, aspect kept."""
    if not max_size or max(width, height) <= max_size:
        return width, height
    scale = max_size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> size=(w, h), antialiased (PIL's bilinear filter widens when shrinking)."""
    if (image.shape[1], image.shape[0]) == size:
        return image
    return np.array(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))  # writable, for torch


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 ids -> size=(w, h) with nearest neighbour (ids never blend)."""
    if (labels.shape[1], labels.shape[0]) == size:
        return labels
    return np.array(Image.fromarray(labels).resize(size, Image.Resampling.NEAREST))


def scale_start_masks(masks: MaskSet, labels: dict[int, np.ndarray], size: tuple[int, int], max_size) -> dict[int, np.ndarray]:
    """Start masks at the internal size; an object that vanishes when scaled is a MaskError."""
    scaled = {}
    for frame, lab in labels.items():
        small = resize_labels(lab, size)
        scaled[frame] = np.ascontiguousarray(small)
        if small is lab:
            continue
        gone = sorted(set(np.unique(lab).tolist()) - set(np.unique(small).tolist()) - {0})
        if gone:
            obj = next((o for o in masks.objects if o.id == gone[0]), None)
            source = obj.source if obj is not None else f"object {gone[0]}"
            raise MaskError(
                f"{source}: object {gone[0]} is too small to survive scaling the frames to {size[0]}x{size[1]} "
                f"(max_size={max_size}); raise max_size (0 = native size)"
            )
    return scaled


class FrameSource:
    """A video's frames at the engine's size: the open reader, the size the engine works at
    (``max_size``, aspect kept) and the scaled frames, optionally decoded ahead in a thread.
    Shared by segment, ``--auto``, benchmark and the backward pass; closing it closes the reader."""

    def __init__(self, reader: FrameReader, max_size: int | None = DEFAULT_MAX_SIZE,
                 size: tuple[int, int] | None = None) -> None:
        """``size``: the engine's (width, height) when the caller knows it already (else from ``max_size``)."""
        self.reader = reader
        self.info = reader.info
        self.size = size or internal_size(self.info.width, self.info.height, max_size)  #: (width, height)

    @classmethod
    def open(cls, path: Path, max_size: int | None = DEFAULT_MAX_SIZE) -> "FrameSource":
        return cls(open_frames(path), max_size)

    @property
    def scaled(self) -> bool:
        """Whether the engine works below the input's size."""
        return self.size != (self.info.width, self.info.height)

    def scale(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) input-size image → the engine's size."""
        return resize_image(image, self.size)

    def frames(self, start: int = 0) -> Iterator[Frame]:
        """Frames from ``start`` on, their images at the engine's size; closing the iterator (or
        leaving it early) stops the decoder."""
        decoded = self.reader.frames(start)
        try:
            for frame in decoded:
                yield replace(frame, image=self.scale(frame.image))
        finally:
            decoded.close()

    def read_ahead(self, start: int = 0, depth: int = PREFETCH_FRAMES) -> Prefetch[Frame]:
        """:meth:`frames`, decoded and scaled up to ``depth`` frames ahead in a background thread."""
        return prefetch(self.frames(start), depth)

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
