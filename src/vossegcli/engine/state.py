"""VideoState: everything the engine knows about one video, kept apart from the networks.

The networks and the math (:class:`~vossegcli.engine.segmenter.Segmenter`) hold no per-video
data, so one engine can process several videos interleaved, and a run can be saved and continued
exactly. A state holds:

* the frame counter and the engine's frame size;
* the object manager (user ids ↔ slots, start frames, frames tracked);
* every object's target model as stacked tensors: ``w1`` (N, C, c) and ``w2`` (N, c, 9);
* the objects' sample memories (one batched :class:`~vossegcli.engine.memory.SampleMemory`);
* the objects' presence state: statuses, boxes, velocities, re-identification templates
  (:class:`~vossegcli.engine.presence.PresenceState`);
* the refiner's parameters when they were tuned on this video's masks
  (:mod:`vossegcli.engine.refiner_tuning`);
* the stage timers of this video.

``diagnostics`` holds the latest frame's :class:`~vossegcli.engine.presence.FrameDiagnostics`
(None on a frame without objects); it is replaced on every frame and not saved.

There is no random state to keep: the only randomness (weight initialization and first-frame
augmentation) is seeded per object from ``(config.seed, object id)``.

:meth:`VideoState.save` writes the state atomically (temporary file, fsync, rename), so a crash
during a save leaves the previous state file intact; :meth:`VideoState.load` refuses a file from
another engine configuration or format.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vossegcli.engine.memory import SampleMemory
from vossegcli.engine.objects import ObjectManager
from vossegcli.engine.presence import FrameDiagnostics, PresenceState
from vossegcli.files import atomic_torch_save

#: Bumped whenever the saved layout changes; older files are refused (the run falls back to re-seeding).
STATE_FORMAT = 3


@dataclass
class StageTimes:
    """Wall time (seconds) spent per stage, summed over the frames processed."""

    backbone: float = 0.0
    target_init: float = 0.0  #: start frames: augmentation, its backbone passes, first optimization
    target_score: float = 0.0  #: applying D, then the refiner (or bilinear upsampling): logits
    target_update: float = 0.0  #: memory insertion and periodic w2 re-optimization
    merge: float = 0.0  #: soft aggregation and label map
    presence: float = 0.0  #: presence decisions, re-identification, diagnostics
    frames: int = 0

    @property
    def engine(self) -> float:
        return self.backbone + self.target_init + self.target_score + self.target_update + self.merge + self.presence

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class VideoState:
    """Per-video engine state (see the module docstring). Create with ``Segmenter.new_state()``."""

    config: dict = field(default_factory=dict)  #: the engine configuration it was made with
    frame_index: int = 0  #: frames processed so far (the next frame's index)
    frame_hw: tuple[int, int] | None = None  #: (H, W) of the frames the engine sees
    objects: ObjectManager = field(default_factory=ObjectManager)
    w1: Tensor | None = None  #: (N, C, c)
    w2: Tensor | None = None  #: (N, c, 9)
    memory: SampleMemory | None = None
    presence: PresenceState | None = None
    times: StageTimes = field(default_factory=StageTimes)
    #: The refiner's parameters tuned on this video's given masks (``refiner_tuning_steps``), by
    #: name; None: the refiner's own.
    refiner_params: dict[str, Tensor] | None = None
    #: What the caller wants saved with the state (e.g. which run it belongs to); plain JSON types.
    extra: dict = field(default_factory=dict)
    #: The latest frame's self-diagnostics (not saved).
    diagnostics: FrameDiagnostics | None = None
    #: The latest frame's per-object probabilities, (N, H, W) uint8 0..255 in slot order, when the
    #: step was asked for them (not saved).
    probabilities: np.ndarray | None = None

    @property
    def num_objects(self) -> int:
        return len(self.objects)

    def remove_objects(self, object_ids: list[int]) -> list[int]:
        """Drop these objects (user ids) from every per-object component — slots, target models,
        memories, presence and templates — as if they had never started; the others keep their
        state and order. Returns the slots removed (KeyError for an id not tracked)."""
        gone = sorted(self.objects.slot_of(i) for i in object_ids)
        keep = [slot for slot in range(self.num_objects) if slot not in gone]
        if not gone:
            return []
        self.objects.select(keep)
        if self.w1 is not None:
            index = torch.tensor(keep, dtype=torch.long, device=self.w1.device)
            self.w1, self.w2 = (self.w1[index], self.w2[index]) if keep else (None, None)
        for component in (self.memory, self.presence):
            if component is not None:
                component.select(keep)
        if self.memory is not None and not keep:
            self.memory = None  # (a new start frame builds it again)
        return gone

    def memory_bytes(self) -> int:
        """Bytes held by all objects' sample memories (fixed once the objects have started)."""
        return self.memory.nbytes if self.memory is not None else 0

    # -- saving --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": STATE_FORMAT,
            "config": self.config,
            "frame_index": self.frame_index,
            "frame_hw": list(self.frame_hw) if self.frame_hw else None,
            "objects": self.objects.state_dict(),
            "w1": self.w1.detach().cpu().clone() if self.w1 is not None else None,
            "w2": self.w2.detach().cpu().clone() if self.w2 is not None else None,
            "memory": self._memory_state(),
            "presence": self.presence.state_dict() if self.presence is not None else None,
            "times": self.times.as_dict(),
            "extra": self.extra,
            "refiner_params": ({k: v.detach().cpu().clone() for k, v in self.refiner_params.items()}
                               if self.refiner_params is not None else None),
        }

    def _memory_state(self) -> dict | None:
        if self.memory is None:
            return None
        state = self.memory.state_dict()
        return {k: (v.cpu() if isinstance(v, Tensor) else v) for k, v in state.items()}

    def save(self, path: str | Path) -> int:
        """Write the state atomically to ``path``; returns the file size in bytes."""
        return atomic_torch_save(self.state_dict(), path, fsync=True)

    @classmethod
    def from_state_dict(cls, blob: dict, device: torch.device | str = "cpu") -> "VideoState":
        if blob.get("format") != STATE_FORMAT:
            raise ValueError(f"state format {blob.get('format')!r} is not {STATE_FORMAT}")
        memory = SampleMemory.from_state_dict(blob["memory"], device) if blob["memory"] is not None else None
        return cls(
            config=blob["config"],
            frame_index=int(blob["frame_index"]),
            frame_hw=tuple(blob["frame_hw"]) if blob["frame_hw"] else None,
            objects=ObjectManager.from_state_dict(blob["objects"]),
            w1=blob["w1"].to(device) if blob["w1"] is not None else None,
            w2=blob["w2"].to(device) if blob["w2"] is not None else None,
            memory=memory,
            presence=PresenceState.from_state_dict(blob["presence"], device) if blob["presence"] is not None else None,
            times=StageTimes(**blob["times"]),
            extra=dict(blob.get("extra") or {}),
            refiner_params=({k: v.to(device) for k, v in blob["refiner_params"].items()}
                            if blob.get("refiner_params") is not None else None),
        )

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu", config: dict | None = None) -> "VideoState":
        """Read a state saved by :meth:`save`. With ``config``, refuse a state made with another
        engine configuration (ValueError)."""
        blob = torch.load(Path(path), map_location="cpu", weights_only=True)
        if config is not None and blob.get("config") != config:
            raise ValueError("the state was saved with other engine settings")
        return cls.from_state_dict(blob, device)
