"""auto-multi with RVOS's instance decoder segmenting every frame (the `rvos` way, issue 24).

    python tools/rvos_eval.py WEIGHTS OUT_DIR [--data ../shared/data] [--objects N] [--json OUT.json]

Every auto-multi clip (eval/auto_multi.py) goes frame by frame through the backbone and the
recurrent decoder (its temporal recurrence keeps the ids); slot i's mask is written as id i + 1.
Scored with the DAVIS-2017 unsupervised protocol (auto_multi.score_clip) and summarized as
``run_auto_multi`` does, so the row compares with `--auto --objects` directly.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vossegcli.engine.backbone import Backbone
from vossegcli.engine.rvos import instance_labels, load_instances
from vossegcli.eval.auto_multi import build_auto_multi, score_clip, summarize
from vossegcli.io.palette import davis_palette, write_label_png

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--objects", type=int, default=None)
    ap.add_argument("--score", type=float, default=0.5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    cache, names = build_auto_multi(args.data)
    backbone, net = Backbone().eval(), load_instances(args.weights)
    palette = davis_palette()
    scores, fps = {}, {}
    for name in names:
        out = args.out / name
        out.mkdir(parents=True, exist_ok=True)
        state = None
        t0 = time.perf_counter()
        frames = sorted((cache / "frames" / name).glob("*.png"))
        for path in frames:
            image = np.asarray(Image.open(path).convert("RGB"))
            rgb = torch.from_numpy(image.copy()).permute(2, 0, 1)[None]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                feats = backbone(rgb)
            logits, score, state = net(feats, state)
            labels = instance_labels(logits[0], score[0], image.shape[:2], args.objects, args.score)
            write_label_png(out / path.name, labels, palette)
        fps[name] = len(frames) / (time.perf_counter() - t0)
        scores[name] = score_clip(out, cache / "masks" / name)
        print(f"{name}: J&F {100 * scores[name].jf:.1f}, {scores[name].found}/{scores[name].objects} found, "
              f"{scores[name].predicted} id(s)", flush=True)
    summary = summarize(scores, fps)
    print(json.dumps({k: v for k, v in summary.items() if k != "per_clip"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"weights": str(args.weights), "objects": args.objects,
                                         "score": args.score, **summary}, indent=1))


if __name__ == "__main__":
    main()
