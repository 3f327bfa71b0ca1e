"""Frames and masks in: open and check them, and scale between the input and the engine's size."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from vossegcli.errors import MaskError
from vossegcli.io.masks import MaskSet, load_masks
from vossegcli.io.video import FrameReader, open_frames

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
        late = [o for o in masks.objects if o.start_frame >= info.num_frames + 2]
        if late:
            o = late[0]
            raise MaskError(
                f"{o.source}: mask is for frame {o.start_frame} but {input_path} has about {info.num_frames} frames; "
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
