"""The shipped weights: where they are, what the manifest says about them, and how a run names them.

Every trained network (the refiner, the learned target-model features, the primary-object network)
ships as one file in ``weights/``, described by an entry of ``weights/manifest.json`` (file, sha256,
data, command, scores). A config field naming weights takes a *spec*: ``"default"`` (the shipped
file of that entry), a path, or ``None`` / ``"none"`` / ``""`` (no such network). This module is the
one place that reads the manifest and resolves specs; the networks' own modules only build, save
and load their networks.
"""

from __future__ import annotations

import json
from os import PathLike
from pathlib import Path
from typing import Any, Callable

from vossegcli.errors import VossegError
from vossegcli.files import sha256_of

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"


def manifest() -> dict:
    """weights/manifest.json as a dict; empty when it is missing or unreadable."""
    try:
        data = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def manifest_entry(key: str) -> dict | None:
    """The manifest's entry ``key`` ("refiner", "target_features", "primary"), or None."""
    entry = manifest().get(key)
    return entry if isinstance(entry, dict) and "file" in entry else None


def shipped_path(key: str) -> Path | None:
    """The shipped file of manifest entry ``key``, or None when none ships (or the file is gone)."""
    entry = manifest_entry(key)
    path = WEIGHTS_DIR / entry["file"] if entry else None
    return path if path is not None and path.is_file() else None


def weights_file(key: str, spec: Any, with_sha256: bool = True) -> tuple[Path | None, str | None]:
    """The file a config's spec names for manifest entry ``key``, and its sha256.

    ``spec``: "default" (the shipped file: ``(None, None)`` when none ships), a path (str or
    PathLike, ``~`` expanded), or None / "none" / "" and anything else (e.g. a network given
    in-process): ``(None, None)``. The sha256 is None when the file is missing or unreadable; the
    path is still returned then, for messages.
    """
    if isinstance(spec, str) and spec not in ("", "none"):
        path = shipped_path(key) if spec == "default" else Path(spec).expanduser()
    elif isinstance(spec, PathLike):
        path = Path(spec).expanduser()
    else:
        return None, None
    if path is None:
        return None, None
    try:
        return path, sha256_of(path) if with_sha256 and path.is_file() else None
    except OSError:
        return path, None


def load_named(key: str, spec: Any, device, load: Callable[[Path, Any], Any], what: str, option: str):
    """The network a config's ``spec`` names for manifest entry ``key``, loaded by ``load(path,
    device)``; None for None / "none" or when nothing ships. A missing, corrupt or foreign file is a
    VossegError naming the file and the fix (``what``: the kind of file, e.g. "refiner"; ``option``:
    the config field that names it)."""
    if spec is None or spec == "none":
        return None
    path, _ = weights_file(key, spec, with_sha256=False)
    if path is None:
        return None
    if not path.is_file():
        raise VossegError(f"{path}: {what} weights not found; pass an existing file or {option}=None")
    fix = f"pass another file or {option}=None"
    try:
        return load(path, device)
    except ValueError as error:  # e.g. a network of a variant removed from vosseg: its message says so
        if "removed from vosseg" in str(error):
            raise VossegError(str(error)) from None
        raise VossegError(f"{path}: not a vosseg {what} file (ValueError); {fix}") from None
    except Exception as error:  # a corrupt or foreign file
        raise VossegError(f"{path}: not a vosseg {what} file ({type(error).__name__}); {fix}") from None


def shipped_info(key: str, role: str, missing: str, scores: Any = None) -> dict:
    """What ``vosseg info`` says about manifest entry ``key``: name, training, file, sha256, whether it
    matches the manifest, licence (and ``scores``, when given, from the entry)."""
    path, sha = weights_file(key, "default")
    entry = manifest_entry(key)
    if path is None or entry is None:
        return {"role": role, "name": missing}
    info = {
        "role": role,
        "name": entry.get("name", f"vosseg {role}"),
        "training": f"{entry.get('steps')} steps of `{entry.get('command')}`",
        "file": str(path),
        "sha256": sha,
        "manifest_sha256_matches": sha == entry.get("sha256"),
    }
    if scores is not None:
        info["scores"] = scores(entry)
    info["license"] = entry.get("license", "Apache-2.0")
    return info


__all__ = ["MANIFEST", "WEIGHTS_DIR", "manifest", "manifest_entry", "sha256_of", "shipped_info",
           "shipped_path", "weights_file"]
