"""Engine settings on both yardsticks: J&F on davis16-train `val` and on `val-synth`, and their mean,
for the default engine (shipped refiner) with each given override; one JSON line per setting.

    python tools/settings_sweep.py OUT.jsonl '{}' '{"feature_scale": 0.03}' '{"channels": 128}' ...
    SPLITS=val-synth python tools/settings_sweep.py OUT.jsonl '{"presence": {"region_filter": true}}'

Nested settings (``presence``, ``augment``) are given as objects of the fields to change.

Masks go to /tmp/sweep/<n>/<split>/; the data is read from ../shared/data (docs/RESULTS.md).
"""
import json
import os
import sys
import time
from pathlib import Path

from vossegcli.engine.config import preset_config, with_overrides
from vossegcli.eval.split import score_yardsticks

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
out = Path(sys.argv[1])
for n, text in enumerate(sys.argv[2:]):
    over = json.loads(text)
    config = with_overrides(preset_config(os.environ.get("PRESET", "default")), over)
    start = time.time()
    splits = tuple(os.environ.get("SPLITS", "val,val-synth").split(","))
    row = {"override": over, **score_yardsticks(DATA, config, Path("/tmp/sweep") / str(n), splits=splits)}
    row["seconds"] = round(time.time() - start)
    with out.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
