"""CPU ms per frame of engine variants on one clip (docs/RESULTS.md, "real30"): `vosseg benchmark`'s
convention (frames in memory, nothing written, first-frame set-up included, one warm-up pass
excluded), each variant run twice in turn. Run it with nothing else on the machine.

    python tools/variant_speed.py CLIP.mp4 MASK.png OUT.jsonl 'NAME=PRESET:JSON' ...
    e.g. 'anchors off=default:{"memory_anchor_weight": 0}' 'default=default:{}' 'quality=quality:{}'
"""
import dataclasses
import json
import sys
from pathlib import Path

from vossegcli.engine.config import preset_config
from vossegcli.run.benchmark import run_benchmark

clip, mask, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
variants = []
for spec in sys.argv[4:]:
    name, rest = spec.split("=", 1)
    preset, text = rest.split(":", 1)
    variants.append((name, dataclasses.replace(preset_config(preset), **json.loads(text))))
for repeat in range(2):
    for name, config in variants:
        r = run_benchmark(clip, [mask], device="cpu", config=config)
        row = {"variant": name, "run": repeat + 1, "fps": r["fps"], "ms_per_frame": round(1000 / r["fps"], 1),
               "stage_ms_per_frame": r["stage_ms_per_frame"], "dtype": r["dtype"], "frames": r["frames"]}
        with out.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
