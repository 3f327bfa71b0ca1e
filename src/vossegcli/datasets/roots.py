"""Where the datasets of ../shared/data live and how they are split: davis16-train (its
`train`/`val` splits and real30's folds) and DUTS-TR (the held-out tenth). Used by evaluation
and training alike, so neither imports the other for it."""

from __future__ import annotations

import json
from pathlib import Path

from vossegcli.errors import InputError

#: real30's folds: the 30 sequences sorted by name, dealt in turn.
FOLDS = 5
#: DUTS-TR images whose number is a multiple of this are held out (700 of 7000).
HOLDOUT_EVERY = 10


def dataset_root(data: Path, name: str, marker_file: str, marker_dir: str) -> Path:
    """``data`` or ``data/name``, whichever holds ``marker_file`` and ``marker_dir``; InputError otherwise."""
    data = Path(data)
    for candidate in (data, data / name):
        if (candidate / marker_file).is_file() and (candidate / marker_dir).is_dir():
            return candidate
    raise InputError(
        f"{data}: no {name} data here (expected {marker_file} and {marker_dir}/); pass data='../shared/data'"
    )


def davis16_root(data: Path) -> Path:
    """Accept ``../shared/data`` or ``../shared/data/davis16-train``."""
    return dataset_root(data, "davis16-train", "splits.json", "videos")


def split_sequences(root: Path, split: str) -> list[str]:
    splits = json.loads((root / "splits.json").read_text())
    if split not in splits:
        raise InputError(f"{root / 'splits.json'}: no split {split!r}; choose one of {', '.join(splits)}")
    return list(splits[split])


def duts_root(data: Path) -> Path:
    """Accept ``../shared/data`` or ``../shared/data/duts-tr``."""
    return dataset_root(data, "duts-tr", "index.json", "images")


def duts_split(root: Path) -> tuple[list[str], list[str]]:
    """(training ids, held-out ids) of DUTS-TR: every :data:`HOLDOUT_EVERY`-th image is held out."""
    items = json.loads((Path(root) / "index.json").read_text())["items"]
    ids = sorted(item["id"] for item in items)
    held = [i for i in ids if int(i) % HOLDOUT_EVERY == 0]
    return [i for i in ids if int(i) % HOLDOUT_EVERY != 0], held


def all_sequences(root: Path) -> list[str]:
    """The 30 davis16-train sequence names (both splits), sorted."""
    splits = json.loads((Path(root) / "splits.json").read_text())
    return sorted({name for names in splits.values() for name in names})


def fold_of(sequences: list[str], name: str) -> int:
    """The fold of ``name``: sequences sorted by name are dealt to the folds in turn."""
    return sorted(sequences).index(name) % FOLDS


def fold_sequences(root: Path, fold: int) -> list[str]:
    """The held-out sequences of ``fold`` (0-based)."""
    if not 0 <= fold < FOLDS:
        raise InputError(f"fold {fold}: choose 0..{FOLDS - 1}")
    names = all_sequences(root)
    return [n for n in names if fold_of(names, n) == fold]


def training_sequences(root: Path, spec: str) -> list[str]:
    """The real sequences a refiner trains on, from ``vosseg train --real``:
    "train" (splits.json's `train`), "none", "all" or "fold:K" (all 30 but fold K)."""
    root = Path(root)
    if spec == "none":
        return []
    if spec == "all":
        return all_sequences(root)
    if spec.startswith("fold:"):
        try:
            fold = int(spec.split(":", 1)[1])
        except ValueError:
            raise InputError(f"--real {spec}: write fold:K with K in 0..{FOLDS - 1}") from None
        held = set(fold_sequences(root, fold))
        return [n for n in all_sequences(root) if n not in held]
    splits = json.loads((root / "splits.json").read_text())
    if spec not in splits:
        raise InputError(f"--real {spec}: choose train, none, all or fold:K (K in 0..{FOLDS - 1})")
    return list(splits[spec])
