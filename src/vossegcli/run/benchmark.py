"""``vosseg benchmark --fps``: the engine's speed on frames already in memory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import torch

from vossegcli import __version__
from vossegcli.engine.segmenter import Segmenter
from vossegcli.engine.config import SegmenterConfig
from vossegcli.engine.device import configure_process, resolve_device
from vossegcli.run.options import DEFAULT_MAX_SIZE
from vossegcli.run.inputs import FrameSource, load_inputs, scale_start_masks
from vossegcli.run.report import environment_info, peak_memory_mb
from vossegcli.run.segment import ProgressFn


def run_benchmark(
    input_path: Path,
    mask_args: Sequence[str],
    *,
    device: str = "auto",
    config: SegmenterConfig | None = None,
    max_frames: int | None = None,
    max_size: int | None = DEFAULT_MAX_SIZE,
    progress: ProgressFn | None = None,
    deterministic: bool = False,
) -> dict:
    """Time the engine on a clip: frames are decoded into memory first (decoding excluded),
    nothing is written; first-frame set-up (target-model training) is included.
    One backbone pass on the first frame runs before timing, to exclude one-off start-up costs.
    Frames and masks are scaled to ``max_size`` as ``segment`` scales them (0 / None: native size),
    so the speed is the speed of the run a user gets with the same option."""
    reader, masks = load_inputs(Path(input_path), mask_args)
    frames = []
    with FrameSource(reader, max_size) as source:
        native, size = (source.info.width, source.info.height), source.size
        for frame in source.frames():
            frames.append(frame.image)
            if max_frames and len(frames) >= max_frames:
                break
    start_masks = scale_start_masks(masks, masks.labels, size, max_size)
    torch_device = resolve_device(device)
    configure_process(torch_device, deterministic)
    segmenter = Segmenter(config, device=torch_device)
    segmenter.sync_timers = True  # per-stage times wait for the GPU (only here: a normal run never waits)
    segmenter.warm_up(frames[0])
    if torch_device.type == "cuda":
        torch.cuda.synchronize(torch_device)
        torch.cuda.reset_peak_memory_stats(torch_device)
    start = time.perf_counter()
    n = 0
    state = segmenter.new_state()
    for _ in segmenter.run(iter(frames), start_masks, state):
        n += 1
        if progress:
            progress(n, len(frames))
    wall = time.perf_counter() - start
    times = state.times
    stages = {k: round(v, 4) for k, v in times.as_dict().items() if k != "frames"}
    h, w = frames[0].shape[:2]
    return {
        "version": __version__,
        "input": str(input_path),
        "frames": n,
        "objects": len(masks.objects),
        "resolution": {"width": w, "height": h},  # what the engine works at
        "input_resolution": {"width": native[0], "height": native[1]},
        "max_size": max_size,
        "device": str(torch_device),
        "dtype": segmenter.precision,
        "fps": round(n / wall, 3),
        "fps_convention": "frames / wall time of the engine loop over frames already in memory; "
        "decoding and PNG writing excluded, first-frame set-up included, one warm-up pass of backbone and refiner excluded",
        "seconds": round(wall, 4),
        "stage_seconds": stages,
        "stage_ms_per_frame": {k: round(1000 * v / max(n, 1), 2) for k, v in stages.items()},
        "memory": peak_memory_mb(torch_device),
        "config": segmenter.config.as_dict(),
        "platform": environment_info(torch_device),
    }
