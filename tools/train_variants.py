"""Train refiner variants and score each on both yardsticks (issue 11's table).

    python tools/train_variants.py OUT.jsonl RUNS_DIR CACHE_DIR NAME '{"refiner_width": 48, ...}' [NAME '{...}' ...]

Each variant is a :class:`~vossegcli.train.trainer.TrainConfig` (defaults below, then the given
fields) trained into RUNS_DIR/NAME, reusing the feature/target-model cache in CACHE_DIR (the same
cache `vosseg train` builds under OUT/cache), then run by the default engine with that refiner on
davis16-train `val` and `val-synth`. One JSON line per variant: the config, training seconds, the
last 50 steps' mean loss, J&F on both splits and their mean, val-synth by scenario.
"""
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from vossegcli.engine.config import preset_config
from vossegcli.eval.split import score_yardsticks
from vossegcli.train.trainer import RefinerTrainer, TrainConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BASE = TrainConfig(data=str(DATA), synthetic_data="ecssd+duts", synthetic_motion="realistic", synthetic_clips=400)

out, runs, cache = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
args = sys.argv[4:]
for name, text in zip(args[::2], args[1::2]):
    cfg = replace(BASE, **json.loads(text))
    run_dir = runs / name
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "cache").exists():
        (run_dir / "cache").symlink_to(cache)
    start = time.time()
    trainer = RefinerTrainer(cfg, run_dir, torch.device("cpu"), log=lambda m: None)
    trainer.prepare()
    trainer.train()
    row = {"name": name, "config": json.loads(text), "train_seconds": round(time.time() - start),
           "loss_last50": round(sum(h["loss"] for h in trainer.history[-50:]) / min(50, len(trainer.history)), 4)}
    engine = preset_config("default", refiner=str(run_dir / "refiner.pt"))
    row.update(score_yardsticks(DATA, engine, run_dir / "eval"))
    row["seconds"] = round(time.time() - start)
    with out.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
