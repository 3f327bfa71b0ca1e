"""Engine settings on both yardsticks: J&F on davis16-train `val` and on `val-synth`, and their mean,
for the default engine (shipped refiner) with each given override; one JSON line per setting.

    python tools/settings_sweep.py OUT.jsonl '{}' '{"feature_scale": 0.03}' '{"channels": 128}' ...

Masks go to /tmp/sweep/<n>/<split>/; the data is read from ../shared/data (docs/RESULTS.md).
"""
import json
import sys
import time
from pathlib import Path

from vossegcli.engine.segmenter import preset_config
from vossegcli.eval.split import run_split

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
out = Path(sys.argv[1])
for n, text in enumerate(sys.argv[2:]):
    over = json.loads(text)
    config = preset_config("default", **{k: tuple(v) if isinstance(v, list) else v for k, v in over.items()})
    row = {"override": over}
    start = time.time()
    for split in ("val", "val-synth"):
        run = run_split(DATA, split, Path("/tmp/sweep") / str(n) / split, config, device="cpu")
        row[split] = round(100 * run.scores.jf_mean, 2)
        row[f"{split}_fps"] = round(run.mean_fps, 2)
        if split == "val-synth":
            by: dict[str, list[float]] = {}
            for name, (_, _, jf) in run.scores.per_sequence().items():
                by.setdefault(name.rsplit("-", 1)[0], []).append(jf)
            row["val-synth_by_scenario"] = {k: round(100 * sum(v) / len(v), 1) for k, v in by.items()}
    row["mean"] = round((row["val"] + row["val-synth"]) / 2, 2)
    row["seconds"] = round(time.time() - start)
    with out.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
