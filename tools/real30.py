"""The `real30` yardstick in one command (docs/RESULTS.md, "real30").

    python tools/real30.py OUT.jsonl --recipe folds --refiners runs/r30 [--name NAME] \
        [--override '{"update_interval": 4, "presence": {"region_filter": true}}'] [--no-refiner] [--features /tmp/r30-features]

Segments all 30 davis16-train sequences with refiners that never saw them (``--recipe folds``:
runs/r30/fold0.pt … fold4.pt, each trained with ``vosseg train --real fold:K``; ``--recipe
synthetic``: one file trained with ``--real none``), scores them with the DAVIS protocol, prints
the per-sequence table with J per quarter of the clip, and appends one JSON line to OUT.jsonl.

``--features DIR`` keeps every backbone output on disk, keyed by the image's bytes, so the next
run over the same sequences skips the frozen backbone (the masks are identical: the stored tensors
are exactly what the backbone returned). Timing runs must not use it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import torch

from vossegcli.engine.backbone import Backbone, BackboneFeatures
from vossegcli.engine.config import preset_config, with_overrides
from vossegcli.eval.real30 import QUARTERS, run_real30

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class StoredBackbone(torch.nn.Module):
    """The backbone, with each single image's features kept on disk under ``root``."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.inner = Backbone()
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def weights_path(self) -> Path:
        return self.inner.weights_path

    def weights_sha256(self) -> str:
        return self.inner.weights_sha256()

    def forward(self, images: torch.Tensor) -> BackboneFeatures:
        if images.shape[0] != 1:
            return self.inner(images)
        key = hashlib.blake2b(images.detach().cpu().contiguous().numpy().tobytes(), digest_size=16).hexdigest()
        key += "-" + str(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else "fp32")
        path = self.root / f"{key}.pt"
        if path.is_file():
            return BackboneFeatures(**torch.load(path))
        feats = self.inner(images)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two runs may fill the store at once
        torch.save({k: getattr(feats, k) for k in ("s4", "s8", "s16", "s32")}, tmp)
        tmp.replace(path)
        return feats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--recipe", choices=("folds", "synthetic"), default="folds")
    ap.add_argument("--refiners", type=Path, default=Path("runs/r30"))
    ap.add_argument("--name", default="")
    ap.add_argument("--override", default="{}", help="engine settings (JSON) over the default preset")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--no-refiner", action="store_true")
    ap.add_argument("--features", type=Path, default=None)
    ap.add_argument("--masks", type=Path, default=Path("/tmp/real30"))
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--sequences", nargs="*", default=None)
    ap.add_argument("--target-features", type=Path, default=None,
                    help="folder of fold0.pt … fold4.pt target-feature adapters (each sequence gets the unseen one)")
    ap.add_argument("--anchors", choices=("first", "mid", "quarters"), default="first",
                    help="ground-truth masks given: the first frame's; also the middle one's; also at 25/50/75 %%")
    ap.add_argument("--bidirectional", action="store_true", help="as `vosseg segment --bidirectional`")
    ap.add_argument("--no-blend", action="store_true", help="anchors re-fit the forward pass only (no backward blend)")
    args = ap.parse_args()
    if args.no_blend:
        from vossegcli.run import anchors as anchor_blend

        anchor_blend.BLEND = False
    config = with_overrides(preset_config(args.preset), json.loads(args.override))
    if args.no_refiner:
        config = with_overrides(config, {"refiner": None})
    backbone = StoredBackbone(args.features) if args.features else None
    start = time.time()
    result = run_real30(args.data, args.recipe, args.refiners, args.masks / (args.name or "run"), config,
                        sequences=args.sequences, backbone=backbone, target_features=args.target_features, anchors=args.anchors,
                        bidirectional=args.bidirectional, progress=lambda seq, i, n: print(f"  {i}/{n} {seq}", file=sys.stderr, flush=True))
    row = {"name": args.name, "anchors": args.anchors, "bidirectional": args.bidirectional, "blend": not args.no_blend, "preset": args.preset, "override": json.loads(args.override),
           "target_features": str(args.target_features) if args.target_features else None, **result.summary(),
           "seconds": round(time.time() - start), "date": time.strftime("%Y-%m-%d")}
    with args.out.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(f"{'sequence':20s} {'J&F':>6s} {'J':>6s} {'F':>6s}  " + " ".join(f"J q{q + 1:d}" for q in range(QUARTERS)))
    for name, s in row["per_sequence"].items():
        print(f"{name:20s} {s['J&F']:6.1f} {s['J']:6.1f} {s['F']:6.1f}  " + " ".join(f"{v:5.1f}" for v in s["J_quarters"]))
    print(f"{'mean (' + row['recipe'] + ')':20s} {row['J&F']:6.2f} {row['J']:6.2f} {row['F']:6.2f}  "
          + " ".join(f"{v:5.1f}" for v in row["J_quarters"]))


if __name__ == "__main__":
    main()
