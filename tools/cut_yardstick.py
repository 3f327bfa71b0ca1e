"""Scene-cut detector yardstick: false cuts on continuous clips, misses on joined ones.

Computes, once, what the detector sees per frame for every davis16-train sequence, every val-synth
clip and the bundled sample (stored in ``--cache``, one .pt per clip), then scores each rule on the
continuous clips and on ``--joined`` clips made of their shots (:mod:`vossegcli.eval.cuts`):

    python tools/cut_yardstick.py --data ../shared/data --cache runs/cuts [--joined 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from vossegcli.engine.backbone import Backbone
from vossegcli.engine.scene_cut import CutRule
from vossegcli.eval.cuts import CutDetector, clip_signals, joined_clips, score_rule
from vossegcli.eval.synth import default_cache
from vossegcli.sample import sample_paths


def collect(data: Path, cache: Path) -> dict[str, dict]:
    cache.mkdir(parents=True, exist_ok=True)
    sources: dict[str, Path] = {"sample": sample_paths().video}
    for video in sorted((data / "davis16-train" / "videos").glob("*.mp4")):
        sources[f"davis/{video.stem}"] = video
    synth = default_cache() / "frames"
    for folder in sorted(p for p in synth.glob("*") if p.is_dir()):
        sources[f"synth/{folder.name}"] = folder
    backbone = None
    out = {}
    for name, path in sources.items():
        file = cache / (name.replace("/", "__") + ".pt")
        if not file.is_file():
            backbone = backbone or Backbone().eval()
            torch.save(clip_signals(path, backbone), file)
            print(f"  {name}: computed", flush=True)
        out[name] = torch.load(file)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--cache", type=Path, default=Path("runs/cuts"))
    ap.add_argument("--joined", type=int, default=200)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    clips = collect(args.data, args.cache)
    joined = joined_clips(clips, args.joined)
    rules = {
        "descriptor only, cosine < 0.78 (before)": lambda: CutDetector(colour=False),
        "descriptor only, cosine < 0.72": lambda: CutDetector(CutRule(descriptor_cut=0.72), colour=False),
        "default: cosine < 0.78 and colour >= 0.2, or cosine < 0.5": CutDetector,
        "cosine < 0.78 and colour >= 0.15, or cosine < 0.6": lambda: CutDetector(CutRule(0.78, 0.15, 0.6)),
    }
    results = {name: score_rule(clips, joined, make) for name, make in rules.items()}
    for name, r in results.items():
        print(f"{name}: false cuts {r['false_cuts']} in {r['clips_with_false_cuts']} of {r['continuous_clips']} "
              f"continuous clips; joins found {r['joins_found']}/{r['joins']} (missed {r['joins_missed']}); "
              f"false cuts inside joined clips {r['false_cuts_in_joined']}")
        if r["false_examples"]:
            print("   e.g.", " ".join(r["false_examples"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
