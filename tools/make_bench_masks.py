"""Masks with 1, 2, 4 and 8 objects on soccerball for `vosseg benchmark` (docs/RESULTS.md, issue 9).

Object 1 is the ground-truth mask; objects 2..8 are 80×100-px boxes elsewhere in the frame — they
only need to cost what an object costs.  python tools/make_bench_masks.py OUT_DIR
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
gt = np.array(Image.open(Path(__file__).resolve().parents[2] / "shared/data/davis16-train/masks/soccerball/00000.png"))
for n in (1, 2, 4, 8):
    lab = (gt > 0).astype(np.uint8)
    for i in range(n - 1):
        r, c = divmod(i, 4)
        y0, x0 = 40 + r * 200, 20 + c * 200
        box = np.zeros_like(lab)
        box[y0 : y0 + 80, x0 : x0 + 100] = 1
        lab[(box > 0) & (lab == 0)] = i + 2
    Image.fromarray(lab, mode="L").save(out / f"mask{n}.png")
