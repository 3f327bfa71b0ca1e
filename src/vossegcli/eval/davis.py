"""DAVIS 2017 semi-supervised evaluation of predicted mask folders against ground truth.

Protocol (the one of the official ``davis2017-evaluation`` code, semi-supervised task):

* A sequence is a folder of PNG id maps (0 = background, k = object k, 255 in the ground
  truth = void, which is set to background). Frames are the ground-truth PNGs sorted by name;
  the prediction must hold a PNG of the same name for every evaluated frame.
* The first and the last frame are not evaluated (the first is the given reference).
* The objects are ids 1..K, K = the largest id in the first ground-truth frame; every one of
  them is scored on every evaluated frame, also frames where it is absent (J = F = 1 when
  prediction and ground truth are both empty there).
* Extension (``objects="all"``, the default): ids above K that appear in later ground-truth
  frames are scored too, each on the frames *after* the frame where it first appears (that
  frame is its reference, as frame 0 is for the others) and before the last frame. Ids above
  K that never appear are skipped, with a warning. Objects 1..K get exactly the official
  treatment, so on data whose objects are all in the first frame (DAVIS) both modes agree.
  ``objects="first-frame"`` is the strict official rule: later ids are ignored in the ground
  truth and are an error in predictions.
* A predicted id above the number of ground-truth objects is an error (the official code
  stops too); an object the prediction never mentions is scored as empty masks.
* Per object: J and F per frame (:mod:`vossegcli.eval.metrics`), then Mean, Recall (fraction
  of frames > 0.5) and Decay (:func:`frame_statistics`). Globally every object of every
  sequence is one entry (``bike-packing_1``, ``bike-packing_2``...): J-Mean is the mean over
  all objects of their J means, likewise F, and J&F-Mean = (J-Mean + F-Mean) / 2.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import UnidentifiedImageError
from rich import box
from rich.table import Table

from vossegcli.errors import InputError, MaskError
from vossegcli.eval.metrics import boundary_measure, region_similarity
from vossegcli.io.palette import VOID_ID, NotAnIdImage, read_ids

__all__ = [
    "EvalResult",
    "ObjectScore",
    "evaluate",
    "evaluate_sequence",
    "frame_statistics",
    "read_id_png",
    "render_table",
]

ObjectsMode = Literal["all", "first-frame"]
ProgressCallback = Callable[[int, int], None]
_ACCEPTED_MODES = ("P", "L", "1", "I", "I;16")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ObjectScore:
    """Scores of one object of one sequence, each in [0, 1] (decay in [-1, 1])."""

    sequence: str
    object_id: int
    j_mean: float
    j_recall: float
    j_decay: float
    f_mean: float
    f_recall: float
    f_decay: float
    num_frames: int
    #: Per-frame values and the frame names they belong to (not part of :meth:`EvalResult.to_dict`).
    j_per_frame: tuple[float, ...] = field(default=(), repr=False, compare=False)
    f_per_frame: tuple[float, ...] = field(default=(), repr=False, compare=False)
    frames: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def key(self) -> str:
        """The official per-object name, ``<sequence>_<object id>``."""
        return f"{self.sequence}_{self.object_id}"

    @property
    def jf_mean(self) -> float:
        return (self.j_mean + self.f_mean) / 2


_STATS = ("j_mean", "j_recall", "j_decay", "f_mean", "f_recall", "f_decay")
_STAT_KEYS = {
    "j_mean": "J-Mean",
    "j_recall": "J-Recall",
    "j_decay": "J-Decay",
    "f_mean": "F-Mean",
    "f_recall": "F-Recall",
    "f_decay": "F-Decay",
}


def _mean_of(objects: Sequence[ObjectScore], stat: str) -> float:
    if not objects:
        return math.nan
    return float(np.mean([getattr(o, stat) for o in objects]))


@dataclass
class EvalResult:
    """All object scores of an evaluation; aggregates weigh every object equally."""

    objects: list[ObjectScore]
    warnings: list[str] = field(default_factory=list)
    objects_mode: ObjectsMode = "all"
    bound_th: float = 0.008

    @property
    def j_mean(self) -> float:
        return _mean_of(self.objects, "j_mean")

    @property
    def j_recall(self) -> float:
        return _mean_of(self.objects, "j_recall")

    @property
    def j_decay(self) -> float:
        return _mean_of(self.objects, "j_decay")

    @property
    def f_mean(self) -> float:
        return _mean_of(self.objects, "f_mean")

    @property
    def f_recall(self) -> float:
        return _mean_of(self.objects, "f_recall")

    @property
    def f_decay(self) -> float:
        return _mean_of(self.objects, "f_decay")

    @property
    def jf_mean(self) -> float:
        return (self.j_mean + self.f_mean) / 2

    @property
    def sequences(self) -> list[str]:
        """Sequence names in evaluation order."""
        return list(dict.fromkeys(o.sequence for o in self.objects))

    def objects_of(self, sequence: str) -> list[ObjectScore]:
        return [o for o in self.objects if o.sequence == sequence]

    def per_sequence(self) -> dict[str, tuple[float, float, float]]:
        """``{sequence: (J-Mean, F-Mean, J&F-Mean)}``, each the mean over the sequence's objects.

        (Not an official number: the official tables are per object and global.)
        """
        out = {}
        for seq in self.sequences:
            objs = self.objects_of(seq)
            j, f = _mean_of(objs, "j_mean"), _mean_of(objs, "f_mean")
            out[seq] = (j, f, (j + f) / 2)
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary; every score is a fraction in [0, 1], not a percentage."""
        global_ = {"J&F-Mean": self.jf_mean}
        global_.update({key: getattr(self, stat) for stat, key in _STAT_KEYS.items()})
        sequences = {}
        for seq, (j, f, jf) in self.per_sequence().items():
            sequences[seq] = {
                "J&F-Mean": jf,
                "J-Mean": j,
                "F-Mean": f,
                "num_objects": len(self.objects_of(seq)),
            }
        objects = {}
        for o in self.objects:
            entry: dict[str, Any] = {"sequence": o.sequence, "object_id": o.object_id, "J&F-Mean": o.jf_mean}
            entry.update({key: getattr(o, stat) for stat, key in _STAT_KEYS.items()})
            entry["num_frames"] = o.num_frames
            objects[o.key] = entry
        return _plain(
            {
                "protocol": "DAVIS 2017 semi-supervised (first and last frames not evaluated)",
                "scale": "fraction in [0, 1]",
                "objects_mode": self.objects_mode,
                "bound_th": self.bound_th,
                "num_sequences": len(sequences),
                "num_objects": len(self.objects),
                "global": global_,
                "sequences": sequences,
                "objects": objects,
                "warnings": list(self.warnings),
            }
        )


def _plain(value: Any) -> Any:
    """numpy scalars to Python numbers, recursively (``json.dumps`` rejects numpy floats)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f}"


def render_table(result: EvalResult) -> Table:
    """A rich table in percent (1 decimal): the global row, then one row per sequence.

    Sequence rows are means over that sequence's objects; the global row is the mean over all
    objects (so it is generally not the mean of the sequence rows).
    """
    table = Table(
        title="DAVIS 2017 semi-supervised evaluation (%)",
        title_justify="left",
        caption="Rec = Recall, Dec = Decay; Global = mean over all objects",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("Sequence", overflow="fold")
    table.add_column("Obj", justify="right", no_wrap=True)
    table.add_column("J&F", justify="right", style="bold", no_wrap=True)
    for header in ("J-Mean", "J-Rec", "J-Dec", "F-Mean", "F-Rec", "F-Dec"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_row(
        "Global",
        str(len(result.objects)),
        _pct(result.jf_mean),
        *(_pct(getattr(result, stat)) for stat in _STATS),
        style="bold",
        end_section=True,
    )
    for seq in result.sequences:
        objs = result.objects_of(seq)
        j, f = _mean_of(objs, "j_mean"), _mean_of(objs, "f_mean")
        table.add_row(seq, str(len(objs)), _pct((j + f) / 2), *(_pct(_mean_of(objs, s)) for s in _STATS),
                      end_section=len(objs) == 1)
        if len(objs) > 1:  # each object of a multi-object sequence on its own row
            for i, obj in enumerate(objs):
                table.add_row(f"  object {obj.object_id}", "", _pct(obj.jf_mean), *(_pct(getattr(obj, s)) for s in _STATS),
                              style="dim", end_section=i == len(objs) - 1)
    return table


# --------------------------------------------------------------------------- statistics


def frame_statistics(values: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """Mean, Recall and Decay of one object's per-frame scores, as the official ``db_statistics``.

    * Mean: ``nanmean``.
    * Recall: fraction of frames whose score is > 0.5 (NaN frames count as misses).
    * Decay: the frames are cut into 4 bins at ``round(linspace(1, n, 5)) - 1`` (bins share
      their edge frames); Decay = mean of the first bin - mean of the last bin.

    The official code casts the bin edges to uint8, so for n > 256 frames its edges wrap
    around and its Decay is wrong (often NaN). Here the edges are int64; for n <= 256 the
    result is identical. For n = 0 all three are NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    if n == 0:
        return math.nan, math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = float(np.nanmean(v))
        recall = float(np.mean(v > 0.5))
        edges = np.round(np.linspace(1, n, 5) + 1e-10).astype(np.int64) - 1
        bins = [v[edges[i] : edges[i + 1] + 1] for i in range(4)]
        decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay


# --------------------------------------------------------------------------- reading


def read_id_png(path: Path, role: str = "mask") -> np.ndarray:
    """Read a PNG of object ids as an (H, W) integer array, as ``np.array(Image.open(path))``.

    Palette ("P") and grayscale ("L", 16/32-bit "I") PNGs give their index/grey values, 1-bit
    PNGs give 0/1. Anything else (RGB, grey+alpha...) or an unreadable file raises
    :class:`~vossegcli.errors.MaskError` naming the file; ``role`` ("predicted",
    "ground-truth") goes into the messages.
    """
    path = Path(path)
    try:
        ids, _ = read_ids(path, _ACCEPTED_MODES)
    except NotAnIdImage as err:
        raise MaskError(
            f"{path}: {role} mask is a {err.mode} image; expected a palette (P) or "
            "grayscale (L) PNG of object ids (0 = background, 1..N = objects)"
        ) from None
    except FileNotFoundError:
        raise MaskError(f"{path}: {role} mask not found") from None
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise MaskError(f"{path}: cannot read {role} mask ({err})") from None
    if ids.ndim != 2:
        raise MaskError(f"{path}: {role} mask has shape {ids.shape}; expected one channel of object ids")
    if ids.dtype == np.bool_:
        ids = ids.astype(np.uint8)
    return ids


def _read_gt(path: Path) -> np.ndarray:
    ids = read_id_png(path, "ground-truth")
    if ids.dtype != np.uint8 and ids.size and (ids.min() < 0 or ids.max() > 255):
        raise MaskError(f"{path}: ground-truth ids must be 0..255, found {ids.min()}..{ids.max()}")
    ids = ids.astype(np.uint8, copy=True)
    ids[ids == VOID_ID] = 0
    return ids


def _png_files(folder: Path) -> list[Path]:
    files = (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png")
    return sorted(files, key=lambda p: p.name)


# --------------------------------------------------------------------------- one sequence


@dataclass
class _SequencePlan:
    name: str
    pred_dir: Path
    gt_dir: Path
    gt_files: list[Path]

    @property
    def num_eval_frames(self) -> int:
        return max(len(self.gt_files) - 2, 0)


def _plan_sequence(pred_dir: Path, gt_dir: Path, name: str | None, force: bool = False) -> _SequencePlan:
    """List the ground-truth frames and check every evaluated frame has a prediction, and (unless
    ``force``, and when the ground truth numbers every frame) that the predictions do not go on past
    the ground truth's last frame — the sign of masks made from another video."""
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if not gt_dir.is_dir():
        raise InputError(f"{gt_dir}: ground-truth folder not found")
    if not pred_dir.is_dir():
        raise InputError(f"{pred_dir}: prediction folder not found")
    gt_files = _png_files(gt_dir)
    if len(gt_files) < 3:
        raise MaskError(
            f"{gt_dir}: {len(gt_files)} ground-truth PNG(s); at least 3 are needed "
            "(the first and the last frame are not evaluated)"
        )
    evaluated = gt_files[1:-1]
    missing = [f.name for f in evaluated if not (pred_dir / f.name).is_file()]
    if missing:
        raise MaskError(
            f"{pred_dir / missing[0]}: predicted mask missing "
            f"({len(missing)} of the {len(evaluated)} evaluated frames have no prediction; "
            "names must match the ground-truth PNGs)"
        )
    numbered = [int(f.stem) for f in gt_files if f.stem.isdigit()]
    dense = len(numbered) == len(gt_files) and numbered == list(range(numbered[0], numbered[0] + len(numbered)))
    if not force and dense:  # (sparse ground truth, e.g. every 5th frame, may end before the video does)
        pred_frames = [f for f in _png_files(pred_dir) if f.stem.isdigit()]
        beyond = [f for f in pred_frames if int(f.stem) > numbered[-1]]
        if beyond:
            raise MaskError(
                f"{pred_dir}: {len(pred_frames)} frame masks, {len(beyond)} of them after the last ground-truth frame "
                f"{gt_files[-1].name} of {gt_dir} ({len(gt_files)} frames): masks of another video? Pass the matching "
                "folders, or add --force to score the frames both have"
            )
    return _SequencePlan(name or gt_dir.name, pred_dir, gt_dir, gt_files)


def _bad_prediction_message(path: Path, ids: np.ndarray, num_objects: int, name: str) -> str:
    values = np.unique(ids)
    if set(values.tolist()) <= {0, 255}:
        return (
            f"{path}: a binary 0/255 mask; predictions must be PNGs of object ids "
            f"(0 = background, 1..{num_objects} = the objects of the ground truth), "
            "e.g. 1 instead of 255 for a single object"
        )
    return (
        f"{path}: holds object id {int(values.max())} but the ground truth of {name} has "
        f"{num_objects} object(s) (ids 1..{num_objects})"
    )


def _evaluate_planned(
    plan: _SequencePlan,
    objects: ObjectsMode,
    bound_th: float,
    progress: Callable[[int], None] | None,
    warn: Callable[[str], None],
) -> list[ObjectScore]:
    gt_files = plan.gt_files
    n_frames = len(gt_files)
    last_eval = n_frames - 2  # index of the last evaluated frame

    # Pass 1: which ids each ground-truth frame holds (first appearance, object count).
    first_seen: dict[int, int] = {}
    shape: tuple[int, ...] | None = None
    first_frame_max = 0
    for index, path in enumerate(gt_files):
        gt = _read_gt(path)
        if shape is None:
            shape = gt.shape
        elif gt.shape != shape:
            raise MaskError(
                f"{path}: ground-truth size {gt.shape[1]}x{gt.shape[0]} differs from "
                f"{shape[1]}x{shape[0]} of {gt_files[0].name}"
            )
        present = np.flatnonzero(np.bincount(gt.ravel(), minlength=256))
        for obj in present[present > 0].tolist():
            first_seen.setdefault(obj, index)
        if index == 0:
            first_frame_max = int(present.max())
        if objects == "first-frame":
            break

    # Object k is scored on frames start[k]..last_eval.
    start = {obj: 1 for obj in range(1, first_frame_max + 1)}
    num_objects = first_frame_max
    if objects == "all" and first_seen:
        num_objects = max(first_frame_max, max(first_seen))
        never = []
        for obj in range(first_frame_max + 1, num_objects + 1):
            if obj not in first_seen:
                never.append(obj)
            elif first_seen[obj] + 1 > last_eval:
                warn(
                    f"{plan.name}: object {obj} first appears in {gt_files[first_seen[obj]].name}, "
                    "too late to be evaluated (its first frame and the last frame are not scored)"
                )
            else:
                start[obj] = first_seen[obj] + 1
        if never:
            ids = ", ".join(map(str, never))
            warn(f"{plan.name}: object id(s) {ids} never appear in the ground truth; not evaluated")
    if not start:
        warn(f"{plan.name}: the ground truth holds no objects; sequence not evaluated")

    j_frames: dict[int, list[float]] = {obj: [] for obj in start}
    f_frames: dict[int, list[float]] = {obj: [] for obj in start}
    names: dict[int, list[str]] = {obj: [] for obj in start}

    # Pass 2: the evaluated frames.
    for done, index in enumerate(range(1, last_eval + 1), start=1):
        gt_path = gt_files[index]
        pred_path = plan.pred_dir / gt_path.name
        gt = _read_gt(gt_path)
        pred = read_id_png(pred_path, "predicted")
        if pred.shape != gt.shape:
            raise MaskError(
                f"{pred_path}: predicted mask is {pred.shape[1]}x{pred.shape[0]}, "
                f"the ground truth {gt_path} is {gt.shape[1]}x{gt.shape[0]}"
            )
        if pred.size and (int(pred.max()) > num_objects or int(pred.min()) < 0):
            raise MaskError(_bad_prediction_message(pred_path, pred, num_objects, plan.name))
        for obj, first in start.items():
            if index < first:
                continue
            gt_mask, pred_mask = gt == obj, pred == obj
            j_frames[obj].append(region_similarity(pred_mask, gt_mask))
            f_frames[obj].append(boundary_measure(pred_mask, gt_mask, bound_th))
            names[obj].append(gt_path.name)
        if progress is not None:
            progress(done)

    scores = []
    for obj in sorted(start):
        jm, jr, jd = frame_statistics(j_frames[obj])
        fm, fr, fd = frame_statistics(f_frames[obj])
        scores.append(
            ObjectScore(
                sequence=plan.name,
                object_id=obj,
                j_mean=jm,
                j_recall=jr,
                j_decay=jd,
                f_mean=fm,
                f_recall=fr,
                f_decay=fd,
                num_frames=len(j_frames[obj]),
                j_per_frame=tuple(j_frames[obj]),
                f_per_frame=tuple(f_frames[obj]),
                frames=tuple(names[obj]),
            )
        )
    return scores


def _check_mode(objects: str) -> None:
    if objects not in ("all", "first-frame"):
        raise ValueError(f"objects must be 'all' or 'first-frame', got {objects!r}")


def _default_warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def evaluate_sequence(
    pred_dir: Path,
    gt_dir: Path,
    name: str | None = None,
    *,
    objects: ObjectsMode = "all",
    bound_th: float = 0.008,
    progress: ProgressCallback | None = None,
    warn: Callable[[str], None] | None = None,
    force: bool = False,
) -> list[ObjectScore]:
    """Score one sequence: ``pred_dir`` and ``gt_dir`` each hold one PNG per frame (``force``: as
    :func:`evaluate`'s).

    ``name`` (default: the ground-truth folder name) labels the objects. ``progress(done,
    total)`` is called after each evaluated frame (total = number of frames - 2). ``warn``
    receives one-line notes (objects skipped...); by default they go to :mod:`warnings`.
    Raises :class:`~vossegcli.errors.VossegError` subclasses for missing folders or frames,
    unreadable PNGs, size mismatches and predicted ids the ground truth does not have.
    """
    _check_mode(objects)
    plan = _plan_sequence(pred_dir, gt_dir, name, force)
    total = plan.num_eval_frames
    on_frame = None if progress is None else (lambda done: progress(done, total))
    return _evaluate_planned(plan, objects, bound_th, on_frame, warn or _default_warn)


def _find_sequences(pred: Path, gt: Path, sequences: Sequence[str] | None, force: bool = False) -> list[_SequencePlan]:
    if not gt.is_dir():
        raise InputError(f"{gt}: ground-truth folder not found")
    if not pred.is_dir():
        raise InputError(f"{pred}: prediction folder not found")
    if _png_files(gt):
        # One sequence. The predictions may be in PRED itself or in PRED/<name>.
        pred_dir = pred if _png_files(pred) or not (pred / gt.name).is_dir() else pred / gt.name
        if sequences is not None and gt.name not in sequences:
            raise InputError(f"{gt}: holds one sequence, {gt.name}, which is not among the requested sequences")
        return [_plan_sequence(pred_dir, gt, gt.name, force)]
    folders = sorted((p for p in gt.iterdir() if p.is_dir() and _png_files(p)), key=lambda p: p.name)
    if not folders:
        raise InputError(f"{gt}: no ground-truth PNGs and no sequence folders of PNGs")
    if sequences is not None:
        known = {p.name for p in folders}
        unknown = [s for s in sequences if s not in known]
        if unknown:
            raise InputError(f"{gt}: no ground-truth sequence folder {unknown[0]}")
        folders = [p for p in folders if p.name in set(sequences)]
    plans = []
    for folder in folders:
        pred_dir = pred / folder.name
        if not pred_dir.is_dir():
            raise InputError(f"{pred_dir}: no prediction folder for ground-truth sequence {folder.name}")
        plans.append(_plan_sequence(pred_dir, folder, folder.name, force))
    return plans


def evaluate(
    pred: Path,
    gt: Path,
    *,
    objects: ObjectsMode = "all",
    bound_th: float = 0.008,
    sequences: Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
    force: bool = False,
) -> EvalResult:
    """Evaluate predictions against ground truth: one sequence or a folder of sequences.

    If ``gt`` holds PNGs it is one sequence (predictions in ``pred`` or ``pred/<gt name>``);
    otherwise every subfolder of ``gt`` holding PNGs is a sequence, and ``pred/<name>`` must
    exist for each (``sequences`` restricts the set). Every problem with the inputs is found
    before the scoring starts where possible (missing folders and frames) and raised as a
    :class:`~vossegcli.errors.VossegError` subclass. ``progress(done, total)`` counts
    evaluated frames over all sequences. ``force``: score even when a prediction folder runs past
    its ground truth's last frame (otherwise refused as masks of another video).
    """
    _check_mode(objects)
    plans = _find_sequences(Path(pred), Path(gt), sequences, force)
    total = sum(p.num_eval_frames for p in plans)
    notes: list[str] = []
    results: list[ObjectScore] = []
    offset = 0
    for plan in plans:
        on_frame = None if progress is None else (lambda done, base=offset: progress(base + done, total))
        results.extend(_evaluate_planned(plan, objects, bound_th, on_frame, notes.append))
        offset += plan.num_eval_frames
    if not results:
        raise MaskError(f"{gt}: the ground truth holds no objects to evaluate")
    return EvalResult(objects=results, warnings=notes, objects_mode=objects, bound_th=bound_th)
