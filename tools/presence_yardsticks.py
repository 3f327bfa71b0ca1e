"""Issue 12's measurement: the presence decisions on and off on `val` and `val-synth` (normal clips
must not get worse) and every variant on `val-lost`; one JSON line per run.

    python tools/presence_yardsticks.py ../shared/data OUT.jsonl [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from vossegcli.engine.config import SegmenterConfig
from vossegcli.eval.lost import run_val_lost
from vossegcli.eval.split import score_yardsticks

VARIANTS = ("off", "noprior", "noownership", "default", "bidirectional")


def config_of(name: str) -> tuple[SegmenterConfig, bool]:
    base = SegmenterConfig()
    p = base.presence
    return {
        "off": (replace(base, presence=replace(p, enabled=False, spatial_prior=False)), False),
        "noprior": (replace(base, presence=replace(p, spatial_prior=False, ownership_penalty=0.0)), False),
        "noownership": (replace(base, presence=replace(p, ownership_penalty=0.0)), False),
        "default": (base, False),
        "bidirectional": (base, True),
    }[name]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--work", type=Path, default=Path("/tmp/presence_yardsticks"))
    ap.add_argument("--skip-normal", action="store_true", help="only val-lost")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated val-lost variants")
    args = ap.parse_args()

    def emit(row: dict) -> None:
        with args.out.open("a") as out:
            out.write(json.dumps(row) + "\n")
        print(json.dumps({k: v for k, v in row.items() if k != "per_clip"}), flush=True)

    if not args.skip_normal:
        for name in ("off", "default"):
            start = time.perf_counter()
            row = score_yardsticks(args.data, config_of(name)[0], args.work / "normal" / name)
            emit({"yardstick": "val+val-synth", "variant": name, "wall_s": round(time.perf_counter() - start, 1), **row})
    for name in args.variants.split(","):
        config, bidirectional = config_of(name)
        start = time.perf_counter()
        row = run_val_lost(args.data, config, args.work / "lost" / name, bidirectional=bidirectional)
        emit({"yardstick": "val-lost", "variant": name, "wall_s": round(time.perf_counter() - start, 1), **row})


if __name__ == "__main__":
    main()
