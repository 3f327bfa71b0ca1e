"""Dump the presence signals of every val-lost clip (issue 12's threshold choice): per frame and
object, whether the object is in the ground truth, the IoU of the written mask, the template
similarity, the peak score, and the frame-to-frame descriptor cosine.

    python tools/lost_signals.py ../shared/data OUT.jsonl [--calibration] [--report-only]

--report-only runs with presence decisions off (every object always written) and no spatial prior,
so the signals are those of the plain tracker.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from vossegcli.engine.config import SegmenterConfig
from vossegcli.eval.lost import build_val_lost
from vossegcli.io.diagnostics_file import DIAGNOSTICS_FILE
from vossegcli.run.diagnostics import read_records
from vossegcli.run.segment import segment


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--calibration", action="store_true")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--work", type=Path, default=Path("/tmp/lost_signals"))
    args = ap.parse_args()
    config = SegmenterConfig()
    if args.report_only:
        config = replace(config, presence=replace(config.presence, enabled=False, spatial_prior=False))
    cache, clips = build_val_lost(args.data, calibration=args.calibration)
    with args.out.open("w") as out:
        for name, meta in clips.items():
            masks = [f"{f}:{cache / 'starts' / name / f'{int(f):05d}.png'}" for f in meta["starts"]]
            folder = args.work / name
            segment(cache / "frames" / name, masks, folder, device="cpu", config=config, force=True)
            for record in read_records(folder / DIAGNOSTICS_FILE):
                t = record["frame"]
                gt = np.asarray(Image.open(cache / "masks" / name / f"{t:05d}.png"))
                pred = np.asarray(Image.open(folder / f"{t:05d}.png"))
                for key, o in record["objects"].items():
                    g, p = gt == int(key), pred == int(key)
                    union = (g | p).sum()
                    out.write(json.dumps({
                        "clip": name, "frame": t, "id": int(key), "gt": bool(g.any()),
                        "iou": float((g & p).sum() / union) if union else 1.0, "cut": record["frame_similarity"], **o,
                    }) + "\n")
            print(name, flush=True)


if __name__ == "__main__":
    main()
