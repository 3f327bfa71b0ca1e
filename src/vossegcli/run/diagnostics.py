"""Self-diagnostics of a run: ``<out>/diagnostics.jsonl`` (one line per frame), its compact summary
for the ``--report`` JSON, and the terminal lines ("object 2: absent at frames 120–180, re-found at 181").

A line holds, per object, the status (tracked / uncertain / lost / absent), the written mask's area
(engine pixels) and its ratio to the previous frame's, the target model's peak score, the mean
refined probability inside the mask, the best template similarity and whether the object was
re-found on that frame; plus whether the frame follows a scene cut::

    {"frame": 31, "scene_cut": true, "objects": {"1": {"status": "absent", "area": 0, ...}}}

The file is written as frames are processed and, on a resumed run, keeps the lines of the frames
before the resume point. The summary is computed by streaming the file (memory stays flat).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from vossegcli.engine.presence import FrameDiagnostics
from vossegcli.files import atomic_write
from vossegcli.io.diagnostics_file import read_records
from vossegcli.io.run_folder import RunFolder

GONE = ("lost", "absent")


def frame_record(d: FrameDiagnostics) -> dict:
    """One line of the file: per object id, its signals."""
    fields = asdict(d)
    objects = {}
    for k, object_id in enumerate(d.ids):
        objects[str(object_id)] = {
            "status": d.status[k], "area": d.area[k], "area_ratio": d.area_ratio[k], "peak": d.peak[k],
            "mean_probability": d.mean_probability[k], "similarity": d.similarity[k], "refound": d.refound[k],
            "parts": d.parts[k] if k < len(d.parts) else None, "reason": d.reason[k] if k < len(d.reason) else None,
        }
    return {"frame": fields["frame"], "scene_cut": d.scene_cut, "frame_similarity": d.frame_similarity, "objects": objects}


class DiagnosticsLog:
    """Appends one line per frame to ``<out>/diagnostics.jsonl``; ``keep``: keep the lines of frames
    before this index from an earlier run (a resume), drop the rest."""

    def __init__(self, out_dir: Path, keep: int = 0) -> None:
        self.path = RunFolder(out_dir).diagnostics_file
        kept: list[str] = []
        if keep > 0 and self.path.is_file():
            with self.path.open() as handle:
                for line in handle:
                    try:
                        if json.loads(line)["frame"] < keep:
                            kept.append(line if line.endswith("\n") else line + "\n")
                    except (ValueError, KeyError):
                        break  # a line cut short by a kill: drop it and what follows
        atomic_write(self.path, lambda handle: handle.write("".join(kept).encode()))
        self._handle = self.path.open("a", buffering=1)

    def add(self, d: FrameDiagnostics | None) -> None:
        if d is not None:
            self._handle.write(json.dumps(frame_record(d), separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._handle.close()


def summarize(path: Path) -> dict:
    """The compact summary of a diagnostics file: scene cuts, and per object its frame counts per
    status, its runs ``[status, first, last]`` (consecutive frames of one status), the frames it was
    re-found on, and its lowest similarity and peak while written. (The runs grow with the number of
    status changes, not with the number of frames.)"""
    cuts: list[int] = []
    objects: dict[str, dict] = {}
    for record in read_records(path):
        frame = record["frame"]
        if record.get("scene_cut"):
            cuts.append(frame)
        for key, o in record["objects"].items():
            s = objects.setdefault(key, {"frames": 0, "counts": {}, "runs": [], "refound": [], "scattered": [],
                                         "min_similarity_written": None, "min_peak_written": None})
            s["frames"] += 1
            s["counts"][o["status"]] = s["counts"].get(o["status"], 0) + 1
            runs = s["runs"]
            if runs and runs[-1][0] == o["status"] and runs[-1][2] == frame - 1:
                runs[-1][2] = frame
            else:
                runs.append([o["status"], frame, frame])
            if o.get("refound"):
                s["refound"].append(frame)
            if (o.get("reason") or "").startswith("scattered") and len(s["scattered"]) < 100:
                s["scattered"].append(frame)
            if o["status"] not in GONE:
                for name, field in (("min_similarity_written", "similarity"), ("min_peak_written", "peak")):
                    if s[name] is None or o[field] < s[name]:
                        s[name] = o[field]
    return {"file": str(path), "scene_cuts": cuts, "objects": objects}


def _span(first: int, last: int) -> str:
    return f"frame {first}" if first == last else f"frames {first}–{last}"


def summary_lines(summary: dict) -> list[str]:
    """Human lines: scene cuts, then each object's lost/absent/uncertain stretches and re-finds."""
    lines = []
    cuts = summary["scene_cuts"]
    if cuts:
        lines.append(f"scene cut{'s' if len(cuts) > 1 else ''} detected at frame{'s' if len(cuts) > 1 else ''} "
                     + ", ".join(map(str, cuts[:12])) + (f" and {len(cuts) - 12} more" if len(cuts) > 12 else ""))
    for key, s in summary["objects"].items():
        # lost and absent stretches, merged where they touch (the object had no mask throughout)
        gone: list[list] = []
        for status, first, last in s["runs"]:
            if status in GONE:
                if gone and gone[-1][2] == first - 1:
                    gone[-1][2] = last
                    gone[-1][0] = gone[-1][0] if gone[-1][0] == status else "lost/absent"
                else:
                    gone.append([status, first, last])
        uncertain = sum(last - first + 1 for status, first, last in s["runs"] if status == "uncertain")
        parts = []
        refound = set(s["refound"])
        for status, first, last in gone[:6]:
            back = last + 1 if last + 1 in refound else None
            parts.append(f"{status} at {_span(first, last)}" + (f", re-found at {back}" if back is not None else ""))
        if len(gone) > 6:
            parts.append(f"{len(gone) - 6} more stretches without a mask")
        if uncertain:
            parts.append(f"uncertain in {uncertain} frame{'s' if uncertain > 1 else ''}")
        scattered = s.get("scattered", [])
        if scattered:
            parts.append(f"mask scattered over separate parts in {len(scattered)}{'+' if len(scattered) >= 100 else ''} "
                         f"frame{'s' if len(scattered) > 1 else ''} from frame {scattered[0]} (check for look-alikes)")
        if parts:
            lines.append(f"object {key}: " + "; ".join(parts))
    return lines


def rewrite_records(path: Path, changes: dict[int, dict[str, dict]]) -> None:
    """Replace per-object entries of some frames (``changes``: frame → {object id: entry}), streaming
    the file into a temporary one and renaming it (used by the backward pass)."""
    path = Path(path)

    def write(handle) -> None:
        for record in read_records(path):
            for key, entry in changes.get(record["frame"], {}).items():
                record["objects"][key] = entry
            handle.write((json.dumps(record, separators=(",", ":")) + "\n").encode())

    atomic_write(path, write)
