"""``--auto --objects``: objects that enter the view after the seed frame. Every DISCOVER_EVERY
frames the proposer (RVOS's instance decoder, or the primary-object network's foreground parts)
splits the frame into parts; :func:`untracked_parts` decides which of them the tracked objects do
not account for, and those become new objects with the next ids."""

from __future__ import annotations

from typing import Callable

import numpy as np

from vossegcli.io.palette import VOID_ID

#: A frame's mask must cover this share of the frame to count as showing an object (a confident
#: speck must not seed the tracker, nor start a new object).
MIN_AREA_FRACTION = 0.002
#: With --objects, frames between looks for objects that entered the view since the seed frame.
DISCOVER_EVERY = 5
#: A part of the network's foreground is a new object when at most this share of it is already tracked.
NEW_OBJECT_OVERLAP = 0.2
#: ... or when its tracked objects cover less than this share of it, relative to their home part's.
SPREAD_SHARE = 0.75


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) of a non-empty bool mask, exclusive ends."""
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return int(ys[0]), int(xs[0]), int(ys[-1]) + 1, int(xs[-1]) + 1


def _apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int], margin: int) -> bool:
    """Whether two boxes are more than ``margin`` pixels apart (neither touches the other)."""
    return a[0] >= b[2] + margin or b[0] >= a[2] + margin or a[1] >= b[3] + margin or b[1] >= a[3] + margin


def untracked_parts(parts: np.ndarray, previous: np.ndarray, min_area: int) -> list[np.ndarray]:
    """The proposer's parts (``parts``: (H, W) uint8, 0 = none) that are new objects given the
    tracked objects' last labels ``previous`` ((H, W) uint8 ids): as (H, W) bool masks of the pixels
    the new object starts from, largest part first.

    A part is new when the tracked objects cover at most NEW_OBJECT_OVERLAP of it (its uncovered
    pixels start it), or when the tracked objects covering it have spread onto it from elsewhere:
    each of them has its *home* (the part it covers the largest share of) in another part whose box
    lies apart from this one, and the share of this part it covers is under SPREAD_SHARE times its
    home's (then the whole part starts it, carved out of the tracked objects; an object seen in two
    pieces covers both alike and stays one). A tracked
    object that has drifted onto a newcomer is caught that way before it takes it over; a part
    beside its tracked object's home (one object cut in two by the proposer) never is. New parts
    whose boxes touch are one new object.
    """
    areas = np.bincount(parts.ravel(), minlength=int(parts.max()) + 1)
    home: dict[int, int] = {}
    share: dict[int, np.ndarray] = {}  # per tracked object, the share of each part it covers
    for j in np.unique(previous):
        if j:
            counts = np.bincount(parts[previous == j], minlength=areas.size)
            counts[0] = 0
            if counts.any():
                share[int(j)] = counts / np.maximum(areas, 1)
                home[int(j)] = int(share[int(j)].argmax())
    margin = max(2, round(0.02 * max(parts.shape)))
    found = []
    for k in sorted(range(1, areas.size), key=lambda k: -areas[k]):
        if areas[k] < min_area:
            continue
        part = parts == k
        tracked = previous[part]
        if (tracked > 0).mean() <= NEW_OBJECT_OVERLAP:
            found.append(part & (previous == 0))
            continue
        owners = [int(j) for j in np.unique(tracked) if j]
        box = _box(part)
        if all(home.get(j, k) != k and share[j][k] < SPREAD_SHARE * share[j][home[j]]
               and _apart(box, _box(parts == home[j]), margin) for j in owners):
            found.append(part)
    # new parts that touch are one object the proposer cut in two
    groups: list[np.ndarray] = []
    for part in (f for f in found if f.any()):
        for g, group in enumerate(groups):
            if not _apart(_box(part), _box(group), margin):
                groups[g] = group | part
                break
        else:
            groups.append(part)
    return groups


def discoverer(parts_of: Callable[[np.ndarray, int], np.ndarray], limit: int, seeded: int, seed_frame: int,
               notify: Callable[[str], None] | None = None):
    """``discover(index, image, previous, ids)`` for :func:`vossegcli.run.segment.segment`: every
    DISCOVER_EVERY frames after ``seed_frame``, the parts ``parts_of(image, min_area)`` finds ((H, W)
    uint8 part ids) that :func:`untracked_parts` calls new become objects with the next ids (after
    ``seeded`` and every id in use; at most ``limit`` objects in all) — an (H, W) uint8 map of them,
    or None. Deterministic in the frames, so a resumed run finds the same objects."""

    def discover(index: int, image: np.ndarray, previous: np.ndarray | None, ids: list[int]) -> np.ndarray | None:
        if previous is None or index <= seed_frame or (index - seed_frame) % DISCOVER_EVERY or len(ids) >= limit:
            return None
        min_area = max(1, int(MIN_AREA_FRACTION * image.shape[0] * image.shape[1]))
        parts = parts_of(image, min_area)
        new = np.zeros(parts.shape, np.uint8)
        next_id, count = max(ids + [seeded]) + 1, len(ids)
        for part in untracked_parts(parts, previous, min_area):
            if count >= limit or next_id >= VOID_ID:
                break
            new[part] = next_id
            if notify:
                notify(f"object {next_id} found entering at frame {index} ({100 * part.mean():.1f}% of the frame)")
            next_id += 1
            count += 1
        return new if new.any() else None

    return discover
