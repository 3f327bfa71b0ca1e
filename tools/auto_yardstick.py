"""The --auto yardstick on the davis16-train `val` split (unsupervised, all frames; see
vossegcli.eval.unsupervised). Appends one JSON line per variant to OUT.jsonl.

    python tools/auto_yardstick.py OUT.jsonl [--variants sal,n1,n2,n5,seed5] [--weights FILE] [--split val|auto-synth]
        [--fold-files experiments/real30]

The shipped refiner v4 and adapter trained on all 30 davis16-train sequences, the six `val` ones
included, so with the shipped files this yardstick no longer scores unseen video.
``--fold-files DIR`` segments each `val` sequence with the real30 networks that never saw it
(DIR/refiners/foldK.pt as the engine's refiner and the proposal network's decoder,
DIR/target_features/foldK.pt as the adapter).
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import torch

from vossegcli.datasets.roots import all_sequences, davis16_root, fold_of, split_sequences
from vossegcli.engine.config import SegmenterConfig
from vossegcli.eval.unsupervised import run_split
from vossegcli.run import auto as auto_module
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
    p.add_argument("--fold-files", type=Path, default=None,
                   help="real30's folder (refiners/, target_features/): each sequence with the fold files that never saw it")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.fold_files is not None:
        return fold_run(args)
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


def fold_run(args: argparse.Namespace) -> None:
    """Each `val` sequence with its real30 fold refiner (engine and proposal decoder) and adapter."""
    root = davis16_root(args.data)
    names = all_sequences(root)
    shipped = auto_module.shipped_path
    for name in args.variants.split(","):
        t0 = time.time()
        rows = {}
        for seq in split_sequences(root, args.split):
            k = fold_of(names, seq)
            refiner = args.fold_files / "refiners" / f"fold{k}.pt"
            adapter = args.fold_files / "target_features" / f"fold{k}.pt"
            # the proposal network decodes with the shipped refiner: this tool swaps in the fold's
            auto_module.shipped_path = lambda key, refiner=refiner: refiner if key == "refiner" else shipped(key)
            config = SegmenterConfig(refiner=str(refiner), target_features=str(adapter))
            try:
                (score,) = run_split(args.data, args.runs, {name: AutoConfig(weights=args.weights, **VARIANTS[name])},
                                     split=args.split, sequences=[seq], config=config)
            finally:
                auto_module.shipped_path = shipped
            rows[seq] = score.per_sequence[seq]
        j = sum(r["J"] for r in rows.values()) / len(rows)
        f = sum(r["F"] for r in rows.values()) / len(rows)
        line = {"variant": name, "files": f"folds: {args.fold_files}", "J": round(100 * j, 2), "F": round(100 * f, 2),
                "J&F": round(50 * (j + f), 2), "per_sequence": rows, "split": args.split,
                "wall_s": round(time.time() - t0, 1), "date": datetime.date.today().isoformat(), "torch": torch.__version__}
        print(f"{name} (fold files): J {line['J']:.2f} F {line['F']:.2f} J&F {line['J&F']:.2f}")
        with open(args.out, "a") as f_out:
            f_out.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
