"""The --auto yardstick on the davis16-train `val` split (unsupervised, all frames; see
vossegcli.eval.unsupervised). Appends one JSON line per variant to OUT.jsonl.

    python tools/auto_yardstick.py OUT.jsonl [--variants sal,n1,n2,n5,seed5] [--weights FILE] [--split val|auto-synth]
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import torch

from vossegcli.eval.unsupervised import run_split
from vossegcli.run.auto import AutoConfig

VARIANTS = {
    "sal": dict(mode="cosnet", references=0),
    "n1": dict(mode="cosnet", references=1),
    "n2": dict(mode="cosnet", references=2),
    "n5": dict(mode="cosnet", references=5),
    "seed5": dict(mode="seed", references=5),
    "seed2": dict(mode="seed", references=2),
    "seed0": dict(mode="seed", references=0),
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--variants", default="sal,n1,n2,n5,seed5")
    p.add_argument("--weights", default="default")
    p.add_argument("--split", default="val")
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--runs", type=Path, default=Path("runs/auto-yardstick"))
    args = p.parse_args()
    torch.set_num_threads(2)
    for name in args.variants.split(","):
        cfg = AutoConfig(weights=args.weights, **VARIANTS[name])
        t0 = time.time()
        if args.split == "auto-synth":
            from vossegcli.eval.auto_synth import run_clips

            (score,) = run_clips(args.data, Path.home() / ".cache" / "vosseg", args.runs, {name: cfg})
        else:
            (score,) = run_split(args.data, args.runs, {name: cfg}, split=args.split)
        line = {**score.to_dict(), "split": args.split, "weights": args.weights, "wall_s": round(time.time() - t0, 1),
                "date": datetime.date.today().isoformat(), "machine": "CPU-2", "torch": torch.__version__}
        with open(args.out, "a") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
