"""ObjectManager: the user's object ids ↔ the engine's slots, in one place.

Slots are the leading index of every per-object tensor in a :class:`~vossegcli.engine.state.VideoState`
(target-model weights, sample memories, presence, templates). Objects get slots in the order they
start; ids may be any non-contiguous values 1..255 (uint8 label maps) and objects may start on any
frame. Every per-object component has ``select(slots)``, through which
:meth:`~vossegcli.engine.state.VideoState.remove_objects` drops objects from all of them at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

#: Most objects one video tracks (each costs one target model per frame; ids must fit in uint8).
MAX_OBJECTS = 32


@dataclass
class ObjectManager:
    """Per slot: the user's id, the frame it started on and how many frames it has been tracked."""

    ids: list[int] = field(default_factory=list)
    start_frames: list[int] = field(default_factory=list)
    frames_tracked: list[int] = field(default_factory=list)
    #: device → the ids as a tensor, so a frame uploads nothing (rebuilt when objects are added)
    _ids_on: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, object_id: int) -> bool:
        return object_id in self.ids

    def slot_of(self, object_id: int) -> int:
        """The slot of a user id (KeyError if it is not tracked)."""
        try:
            return self.ids.index(object_id)
        except ValueError:
            raise KeyError(f"object {object_id} is not tracked") from None

    def add(self, object_ids: list[int], frame: int) -> list[int]:
        """Give new objects slots; returns the slots. Refuses a known id and more than MAX_OBJECTS."""
        for object_id in object_ids:
            if object_id in self.ids:
                raise ValueError(f"object {object_id} is already tracked; each id may start only once")
            if not 0 < object_id < 256:
                raise ValueError(f"object id {object_id} must be in 1..255")
        if len(self.ids) + len(object_ids) > MAX_OBJECTS:
            raise ValueError(f"more than {MAX_OBJECTS} objects")
        first = len(self.ids)
        self._ids_on.clear()
        self.ids += list(object_ids)
        self.start_frames += [frame] * len(object_ids)
        self.frames_tracked += [0] * len(object_ids)
        return list(range(first, len(self.ids)))

    def select(self, slots: list[int]) -> None:
        """Keep only ``slots``, in that order (the other objects are dropped)."""
        self._ids_on.clear()
        self.ids = [self.ids[i] for i in slots]
        self.start_frames = [self.start_frames[i] for i in slots]
        self.frames_tracked = [self.frames_tracked[i] for i in slots]

    def ids_tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """(N,) int64 user ids in slot order, on ``device`` (cached)."""
        key = str(device)
        if key not in self._ids_on:
            self._ids_on[key] = torch.tensor(self.ids, dtype=torch.long, device=device)
        return self._ids_on[key]

    def state_dict(self) -> dict:
        return {"ids": list(self.ids), "start_frames": list(self.start_frames), "frames_tracked": list(self.frames_tracked)}

    @classmethod
    def from_state_dict(cls, state: dict) -> "ObjectManager":
        return cls(list(state["ids"]), list(state["start_frames"]), list(state["frames_tracked"]))
