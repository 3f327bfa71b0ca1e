"""Train the refiners real30 scores with (docs/RESULTS.md, "real30"): one on synthetic clips only,
then one per fold, started from it, on the other 24 real sequences + synthetic clips.

    python tools/real30_refiners.py runs/r30 [--synthetic-steps 2000] [--fold-steps 300] [--only synthetic|folds|cache]
        [--target-features none|DIR] [--synthetic FILE] [--cache DIR] [--width 48] [--threads N]

Writes runs/r30/synthetic.pt and runs/r30/fold0.pt … fold4.pt (and a log of each run's loss curve,
runs/r30/<name>/history.json). All runs share one feature cache (runs/r30/cache); a finished run
is skipped, so the command can be re-run after an interruption. No validation here: tools/real30.py
scores the result.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from vossegcli.datasets.roots import FOLDS
from vossegcli.train.trainer import RefinerTrainer, TrainConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def train(out: Path, name: str, config: TrainConfig) -> None:
    target = out / f"{name}.pt"
    if target.is_file():
        print(f"{target}: done already", flush=True)
        return
    start = time.time()
    trainer = RefinerTrainer(config, out / name, torch.device("cpu"), log=print)
    resumed = trainer.load_checkpoint()
    trainer.prepare()
    print(f"{name}: cache ready after {time.time() - start:.0f} s{' (resumed at step %d)' % trainer.step if resumed else ''}",
          flush=True)
    trainer.train(progress=lambda step, loss: print(f"{name} step {step} loss {loss:.4f}", flush=True)
                  if step % 100 == 0 else None)
    (out / name / "history.json").write_text(json.dumps({"wall_seconds": round(time.time() - start),
                                                          "config": config.as_dict(), "history": trainer.history}))
    shutil.copyfile(out / name / "refiner.pt", target)
    print(f"{name}: {trainer.step} steps in {time.time() - start:.0f} s -> {target}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--synthetic-steps", type=int, default=2000)
    ap.add_argument("--fold-steps", type=int, default=300)
    ap.add_argument("--only", choices=("synthetic", "folds", "cache"), default=None)
    ap.add_argument("--folds", type=int, nargs="*", default=list(range(FOLDS)))
    ap.add_argument("--target-features", default="none", metavar="none|DIR",
                    help="none: D on the backbone's features alone; DIR: fold K's refiner learns from the scores of D "
                    "on DIR/foldK.pt's learned features (tools/real30.py --target-features DIR)")
    ap.add_argument("--synthetic", type=Path, default=None, help="the synthetic refiner the folds start from "
                    "(default OUT/synthetic.pt)")
    ap.add_argument("--cache", type=Path, default=None, help="feature cache (default OUT/cache)")
    ap.add_argument("--width", type=int, default=32, help="the refiner's width (the shipped one: 32)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: one per core)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    cache = str(args.cache or out / "cache")
    synthetic = args.synthetic or out / "synthetic.pt"
    base = dict(data=str(args.data), cache=cache, seed=0, refiner_width=args.width)
    adapter = (lambda k: "none") if args.target_features == "none" else \
        (lambda k: str(Path(args.target_features) / f"fold{k}.pt"))
    if args.only == "cache":  # the real sequences' features and target models, for the fold runs
        RefinerTrainer(TrainConfig(**base, real="all", synthetic_ratio=0.0, target_features="none"), out / "cache-build", torch.device("cpu")).prepare()
        return
    if args.only in (None, "synthetic"):
        train(out, "synthetic", TrainConfig(**base, steps=args.synthetic_steps, real="none", synthetic_ratio=1.0,
                                            target_features="none"))
    if args.only in (None, "folds"):
        for k in args.folds:
            train(out, f"fold{k}", TrainConfig(**base, steps=args.fold_steps, real=f"fold:{k}", synthetic_ratio=0.5,
                                               init=str(synthetic), target_features=adapter(k)))


if __name__ == "__main__":
    main()
