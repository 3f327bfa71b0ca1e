"""The `auto-multi` yardstick (several objects, no mask; DAVIS-2017 unsupervised protocol):

    python tools/auto_multi.py --data ../shared/data --out runs/auto-multi --objects 1,all [--json runs/auto-multi.json]
        [--proposer parts|RVOS_WEIGHTS]

One row per ``--objects`` value (1 = today's single primary object): J, F, J&F, objects found vs
present, predicted ids, wall FPS (proposal included; meaningful only with nothing else running).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vossegcli.eval.auto_multi import run_auto_multi
from vossegcli.run.auto import AutoConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("runs/auto-multi"))
    ap.add_argument("--objects", default="1,all")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--proposer", default="default",
                    help="with --objects other than 1: default (the shipped RVOS decoder), parts (the primary-object "
                    "mask's parts) or an RVOS weights file")
    ap.add_argument("--foreground", type=float, default=0.5,
                    help="experiment: the primary-object probability above which a pixel is foreground (package: 0.5)")
    args = ap.parse_args()
    if args.foreground != 0.5:
        import vossegcli.engine.primary as primary

        predict = primary.PrimarySegmenter.predict

        def thresholded(self, image, refs, features=None):
            r = predict(self, image, refs, features)
            return primary.PrimaryPrediction(r.probability, r.probability > args.foreground, r.confidence)

        primary.PrimarySegmenter.predict = thresholded
    rows = {}
    for value in args.objects.split(","):
        count = 0 if value == "all" else int(value)
        rows[value] = run_auto_multi(args.data, args.out / f"objects-{value}", AutoConfig(objects=count, proposer=args.proposer),
                                     log=lambda line, v=value: print(f"[{v}] {line}", flush=True))
        r = rows[value]
        print(f"--objects {value}: J {r['J']} F {r['F']} J&F {r['J&F']}; found {r['objects_found']}/{r['objects_present']}, "
              f"{r['ids_predicted']} ids; wall FPS {r['wall_fps_mean']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
