"""``--correct``: fix a run from one frame on, and the keyframe states that make it cheap.

**Keyframes.** Every periodic save of the engine state (every ``state_every`` frames, default 50)
is also kept as a keyframe, ``<out>/.vosseg-keyframes/<frame>.pt`` (a hard link to the state file
written anyway, so keeping it costs no time). At most :data:`MAX_KEYFRAMES` are kept, taking at
most :data:`KEYFRAMES_BUDGET` (512 MiB) together: beyond either, the keyframe whose neighbours are
closest together goes, so they stay spread over the whole video (the newest always stays). A
keyframe holds what :class:`~vossegcli.engine.state.VideoState` holds — mostly the sample
memories: 52 MB for one object at 854×480 once its memory is full (docs/RESULTS.md), so one
object keeps about nine keyframes, four objects two.

**A correction.** ``vosseg segment VIDEO --mask ... --out DIR --correct 120:fix.png`` on a complete
or interrupted run in DIR (same input, masks and options — the command DIR was made with):

1. the correction masks are read with the run's masks (``fix.png`` gives objects again: an anchor,
   :mod:`vossegcli.io.masks`) and copied into ``DIR/.vosseg-corrections/`` so the run keeps them;
   the run record lists them, and a later ``--resume`` or ``--correct`` includes them itself;
2. the run restarts from the latest keyframe at or before the earliest new correction (frame 0 when
   there is none): the masks from there on are removed, then written again by the forward pass,
   which blends them with the backward pass from the correction (:mod:`vossegcli.run.anchors`);
3. frames before the restart point are not touched (byte-identical); from it on the result is the
   same as a full run given the correction as a ``--mask``.

A correction past the frames already written (an interrupted run) is a resume with the new mask.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from vossegcli.errors import MaskError, OutputError, VossegError
from vossegcli.files import sha256_of
from vossegcli.io.masks import MaskSet, parse_mask_arg
from vossegcli.io.run_folder import RunFolder

#: Most keyframe states kept per run, and the most disk they may take together (thinned evenly
#: beyond either; the newest is always kept).
MAX_KEYFRAMES = 16
KEYFRAMES_BUDGET = 512 * 2**20


# ------------------------------------------------------------------------------------ keyframes


def keyframes(out_dir: Path) -> dict[int, Path]:
    """Frame index (the first frame the state continues with) → keyframe file, ascending."""
    folder = RunFolder(out_dir).keyframes_dir
    found = {}
    for path in folder.glob("*.pt") if folder.is_dir() else ():
        if path.stem.isdigit():
            found[int(path.stem)] = path
    return dict(sorted(found.items()))


def keep_keyframe(state_file: Path, out_dir: Path, frame: int) -> None:
    """Keep the state just saved to ``state_file`` as the keyframe of ``frame``, then thin the keyframes
    to :data:`MAX_KEYFRAMES`. A failure only means one keyframe less (never fails the run)."""
    folder = RunFolder(out_dir)
    target = folder.keyframe(frame)
    try:
        folder.keyframes_dir.mkdir(exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(state_file, target)
        except OSError:  # a file system without hard links
            shutil.copyfile(state_file, target)
    except OSError:
        return
    try:
        kept = keyframes(out_dir)
        sizes = {f: p.stat().st_size for f, p in kept.items()}
        while len(kept) > MAX_KEYFRAMES or (len(kept) > 1 and sum(sizes[f] for f in kept) > KEYFRAMES_BUDGET):
            frames = list(kept)
            # drop the keyframe (never the newest) whose neighbours are closest together
            gaps = {frames[i]: frames[i + 1] - (frames[i - 1] if i > 0 else 0) for i in range(len(frames) - 1)}
            drop = min(gaps, key=lambda f: (gaps[f], f))
            kept.pop(drop).unlink(missing_ok=True)
    except OSError:
        return


def drop_keyframes_after(out_dir: Path, frame: int) -> None:
    """Remove the keyframes of frames after ``frame`` (they hold a run that is being rewritten)."""
    for f, path in keyframes(out_dir).items():
        if f > frame:
            path.unlink(missing_ok=True)


def keyframes_bytes(out_dir: Path) -> int:
    return sum(p.stat().st_size for p in keyframes(out_dir).values())


def latest_keyframe(segmenter, out_dir: Path, identity: dict, work_size: tuple[int, int], at_most: int, last: int):
    """The state of the latest keyframe of this run in ``out_dir`` that continues at frame ``at_most``
    or earlier (masks complete up to ``last``), or None."""
    from vossegcli.run.resume import load_saved_state

    for frame, path in reversed(keyframes(out_dir).items()):
        if frame <= min(at_most, last + 1):
            state, _ = load_saved_state(segmenter, out_dir, identity, work_size, last, path=path)
            if state is not None and state.frame_index == frame:
                return state
    return None


def restart_for_correction(segmenter, out_dir: Path, identity: dict, work_size: tuple[int, int], masks,
                           earliest: int, last: int):
    """Where a correction of frame ``earliest`` restarts the run in ``out_dir`` (masks complete up to
    ``last``): the latest usable keyframe at or before it, else frame 0. Returns (the keyframe's
    state or None, the ResumePlan); :func:`discard_from` then removes what the restart rewrites."""
    from vossegcli.run.resume import ResumePlan

    state = latest_keyframe(segmenter, out_dir, identity, work_size, earliest, last)
    restart = state.frame_index if state is not None else 0
    note = (f"correcting from frame {restart} (the keyframe at or before frame {earliest}): frames 0-{restart - 1} "
            "are kept as they are" if restart > 0
            else f"correcting from frame 0: no keyframe at or before frame {earliest}, every frame is redone")
    if state is not None:
        return state, ResumePlan(restart - 1, {}, [note])
    return None, ResumePlan(-1, dict(masks.labels), [note])


def discard_from(out_dir: Path, frame_name, restart: int, last: int) -> None:
    """Remove the masks of frames ``restart``..``last``, the keyframes after ``restart`` and the state
    file: a correction rewrites them (call it once the run record lists the correction)."""
    for t in range(restart, last + 1):
        (Path(out_dir) / f"{frame_name(t)}.png").unlink(missing_ok=True)
    drop_keyframes_after(out_dir, restart)
    RunFolder(out_dir).state_file.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------ corrections


@dataclass
class Corrections:
    """What is applied over a run's own masks: correction masks (anchors) and removals."""

    masks: list[tuple[int, Path]] = field(default_factory=list)  #: (frame, mask file), by frame
    removals: dict[int, list[int]] = field(default_factory=dict)  #: frame → ids removed from that frame on

    def __bool__(self) -> bool:
        return bool(self.masks or self.removals)

    @property
    def frames(self) -> list[int]:
        return sorted({f for f, _ in self.masks} | set(self.removals))

    @classmethod
    def parse(cls, correct: Sequence[str] = (), remove: Sequence[str] = ()) -> "Corrections":
        """``--correct N:fix.png`` and ``--remove N:ID[,ID...]`` values (the frame is required)."""
        masks = []
        for arg in correct:
            frame, path = parse_mask_arg(arg)
            if frame is None:
                raise MaskError(f"--correct {arg}: say which frame it corrects, as N:{Path(path).name} (N = frame index)")
            masks.append((frame, Path(path)))
        frames = [f for f, _ in masks]
        if len(set(frames)) != len(frames):
            dup = next(f for f in frames if frames.count(f) > 1)
            raise MaskError(f"--correct: two corrections for frame {dup}; merge them into one mask per frame")
        removals: dict[int, list[int]] = {}
        for arg in remove:
            match = _REMOVE.match(str(arg))
            if not match:
                raise MaskError(f"--remove {arg}: write N:ID (object ID removed from frame N on), e.g. 120:2 or 120:2,3")
            ids = [int(v) for v in match.group(2).split(",")]
            removals.setdefault(int(match.group(1)), [])
            removals[int(match.group(1))] = sorted(set(removals[int(match.group(1))]) | set(ids))
        return cls(sorted(masks), dict(sorted(removals.items())))

    @classmethod
    def of_run(cls, out_dir: Path, correct: Sequence[str], remove: Sequence[str], *, resume: bool,
               force: bool) -> tuple["Corrections", "Corrections", bool]:
        """(the corrections given now, all of the run's, whether they edit the run already in ``out_dir``).
        A run resumed or edited keeps its recorded corrections; a new one (or ``force``) has only
        those given now. Raises VossegError for ``--correct``/``--remove`` that cannot apply."""
        if (correct or remove) and resume:
            raise VossegError(("--correct" if correct else "--remove") + " continues the run in --out itself: drop --resume")
        if correct and force:
            raise VossegError("--correct continues the run in --out itself: drop --force (or give the fix as another --mask)")
        new = cls.parse(correct, remove)
        editing = bool(new) and RunFolder(out_dir).holds_run() and not force
        if correct and not editing:
            raise OutputError(f"{out_dir}: holds no vosseg run to correct; run without --correct first, or give the "
                              "correction as another --mask")
        if not (resume or editing):
            return new, new, editing
        return new, cls.recorded(out_dir, replaced={f for f, _ in new.masks}).merged(new), editing

    @classmethod
    def recorded(cls, out_dir: Path, replaced: set[int] = frozenset()) -> "Corrections":
        """The corrections the run record of ``out_dir`` lists (their masks are kept in the run folder).
        A kept mask that is missing or no longer the one recorded (its sha256) is refused (OutputError):
        the run would continue from a mask it never used — unless a new correction ``replaced`` its frame."""
        record = RunFolder(out_dir).read_record() or {}
        out = cls()
        for item in record.get("corrections") or []:
            try:
                if "remove" in item:
                    out.removals[int(item["frame"])] = sorted(int(i) for i in item["remove"])
                    continue
                frame, path = int(item["frame"]), RunFolder(out_dir).corrections_dir / str(item["file"])
            except (KeyError, TypeError, ValueError):
                continue
            if frame not in replaced and item.get("sha256") and \
                    (not path.is_file() or sha256_of(path) != item["sha256"]):
                raise OutputError(f"{path}: the correction of frame {frame} is {'changed' if path.is_file() else 'missing'} "
                                  f"since the run used it; give it again with --correct {frame}:FIX.png, or start over "
                                  "with --force")
            out.masks.append((frame, path))
        out.masks.sort()
        return out

    def merged(self, new: "Corrections") -> "Corrections":
        """These corrections and ``new`` (a new mask replaces one of its frame; removals add up)."""
        frames = {f for f, _ in new.masks}
        removals = {f: list(ids) for f, ids in self.removals.items()}
        for f, ids in new.removals.items():
            removals[f] = sorted(set(removals.get(f, [])) | set(ids))
        return Corrections(sorted([c for c in self.masks if c[0] not in frames] + list(new.masks)),
                           dict(sorted(removals.items())))

    def mask_args(self) -> list[str]:
        return [f"{f}:{p}" for f, p in self.masks]

    def check(self, masks: MaskSet, num_frames: int | None, exact: bool = True) -> None:
        """Refuse corrections past the end of a video of ``num_frames`` frames (``exact`` False: a
        metadata estimate, off by up to 2) and removals of objects that are not there (MaskError)."""
        starts = {o.id: o.start_frame for o in masks.objects}
        limit = None if num_frames is None else num_frames + (0 if exact else 2)
        for frame, path in self.masks:
            if limit is not None and frame >= limit:
                raise MaskError(f"--correct {frame}:{Path(path).name}: frame {frame} is past the end of the video "
                                f"({num_frames} frames); give a frame inside it")
        for frame, ids in self.removals.items():
            if limit is not None and frame >= limit:
                raise MaskError(f"--remove {frame}:{ids[0]}: frame {frame} is past the end of the video "
                                f"({num_frames} frames); give a frame inside it")
            for object_id in ids:
                if object_id not in starts:
                    raise MaskError(f"--remove {frame}:{object_id}: there is no object {object_id} (the objects are "
                                    f"{', '.join(map(str, sorted(starts)))})")
                if frame <= starts[object_id]:
                    raise MaskError(f"--remove {frame}:{object_id}: object {object_id} starts at frame "
                                    f"{starts[object_id]}; remove it from a later frame, or drop its mask")

    def store(self, out_dir: Path) -> list[dict]:
        """Copy the correction masks into ``out_dir``/.vosseg-corrections (those not there yet) and
        return the run record's list of the corrections."""
        folder = RunFolder(out_dir).corrections_dir
        listed: list[dict] = []
        if self.masks:
            folder.mkdir(exist_ok=True)
        for frame, path in self.masks:
            target = folder / f"{frame:06d}.png"
            if Path(path).resolve() != target.resolve():
                try:
                    shutil.copyfile(path, target.with_suffix(".tmp"))
                    os.replace(target.with_suffix(".tmp"), target)
                finally:
                    target.with_suffix(".tmp").unlink(missing_ok=True)
            listed.append({"frame": frame, "file": target.name, "sha256": sha256_of(target)})
        for stale in folder.glob("*.png") if folder.is_dir() else ():
            if stale.name not in {c["file"] for c in listed}:
                stale.unlink(missing_ok=True)
        listed += [{"frame": f, "remove": ids} for f, ids in self.removals.items()]
        return sorted(listed, key=lambda c: (c["frame"], "remove" in c))


_REMOVE = re.compile(r"^\s*(\d+)\s*:\s*(\d+(?:\s*,\s*\d+)*)\s*$")


__all__ = [
    "KEYFRAMES_BUDGET", "MAX_KEYFRAMES", "Corrections", "drop_keyframes_after", "keep_keyframe", "keyframes",
    "discard_from", "keyframes_bytes", "latest_keyframe", "restart_for_correction",
]
