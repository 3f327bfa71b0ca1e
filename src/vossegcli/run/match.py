"""Do a mask folder and an input video belong together? Checked before drawing or scoring, so
one video's masks are never drawn over another's (``vosseg overlay``) without being told.

Evidence, strongest first: the folder's run record (``.vosseg-run.json``: the input it was made
from, its size and frame count), then the number of frame masks against the input's frames.
"""

from __future__ import annotations

import re
from pathlib import Path

from vossegcli.errors import MaskError
from vossegcli.io.video import TRUNCATION_TOLERANCE, VideoInfo
from vossegcli.io.run_folder import recorded_input

_FRAME_STEM = re.compile(r"^\d+$")


def frame_mask_names(masks_dir: Path, info: VideoInfo) -> list[str]:
    """Stems of the PNGs in ``masks_dir`` that name frames: the input's frame names for a folder of
    frames, all-digit names (00000, 00001, ...) for a video."""
    stems = [p.stem for p in Path(masks_dir).glob("*.png") if p.is_file()]
    if info.frame_names is not None:
        known = set(info.frame_names)
        return [s for s in stems if s in known or _FRAME_STEM.match(s)]
    return [s for s in stems if _FRAME_STEM.match(s)]


def check_masks_match_input(input_path: Path, masks_dir: Path, info: VideoInfo) -> None:
    """Raise :class:`MaskError` (one line, with ``--force`` as the way on) when ``masks_dir`` was made
    from another input, or holds a different number of frame masks than ``input_path`` has frames."""
    input_path, masks_dir = Path(input_path), Path(masks_dir)
    force = "; add --force to draw them anyway"
    recorded = recorded_input(masks_dir)
    if recorded is not None:
        here = str(input_path.expanduser().resolve())
        same_file = recorded.get("path") == here
        same_shape = (recorded.get("width"), recorded.get("height")) == (info.width, info.height)
        same_bytes = info.kind != "video" or recorded.get("bytes") in (None, input_path.stat().st_size)
        if not (same_shape and same_bytes):
            what = ("an earlier version of this file" if same_file else
                    f"{recorded.get('path')} ({recorded.get('width')}x{recorded.get('height')})")
            raise MaskError(
                f"{masks_dir}: masks made from {what}, not from {input_path} ({info.width}x{info.height}); pass the "
                f"input they were made from{force}"
            )
        if recorded.get("complete") is False:
            how = f"`{recorded['command']} --resume`" if recorded.get("command") else "the same segment command with --resume"
            raise MaskError(f"{masks_dir}: the run that writes these masks did not finish; complete it with {how}{force}")
    names = frame_mask_names(masks_dir, info)
    if info.frame_names is not None:
        extra = sorted(set(names) - set(info.frame_names))
        if extra:
            raise MaskError(
                f"{masks_dir}: {len(extra)} mask(s) for frames {input_path} does not have (e.g. {extra[0]}.png); "
                f"these masks belong to another input{force}"
            )
        return
    if recorded is not None and recorded.get("complete") and recorded.get("frames") is not None:
        frames, slack = int(recorded["frames"]), 0  # the run itself counted the frames it decoded
    else:  # the container's index (mp4, mov), which a decoder may fall a few frames short of; else unchecked
        frames = info.frames_announced
        slack = max(TRUNCATION_TOLERANCE, int(0.02 * frames)) if frames else 0
    if frames is not None and names and not frames - slack <= len(names) <= frames:
        raise MaskError(
            f"{masks_dir}: {len(names)} frame masks but {input_path} has {frames} frames; these masks belong to "
            f"another input (pass the one they were made from){force}"
        )
