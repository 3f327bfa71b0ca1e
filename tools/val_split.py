"""J&F of the engine in a source tree over a davis16-train split, without the CLI (docs/RESULTS.md).

    python tools/val_split.py SRC_DIR OUT_DIR ['{"precision": "fp32"}'] [val|train]

SRC_DIR is the ``src`` folder of the build to measure (so two builds can be compared side by side);
the data is read from ../shared/data/davis16-train relative to this repository.
"""
import sys, json, time
src, out = sys.argv[1], sys.argv[2]
over = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
sys.path.insert(0, src)
from pathlib import Path
from vossegcli.io.video import open_frames
from vossegcli.io.palette import read_label_png, write_label_png
from vossegcli.engine.segmenter import Segmenter
from vossegcli.engine.config import preset_config
from vossegcli.eval.davis import evaluate
D = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis16-train"
seqs = json.loads((D / "splits.json").read_text())[sys.argv[4] if len(sys.argv) > 4 else "val"]
seg = Segmenter(preset_config("default", **over), device="cpu")
t0 = time.time(); nf = 0
for s in seqs:
    first = read_label_png(D / "masks" / s / "00000.png")
    o = Path(out) / s; o.mkdir(parents=True, exist_ok=True)
    with open_frames(D / "videos" / f"{s}.mp4") as r:
        frames = (f.image for f in r)
        for res in seg.run(frames, {0: first}):
            write_label_png(o / f"{res.index:05d}.png", res.labels, None); nf += 1
r = evaluate(Path(out), D / "masks", sequences=seqs)
print(json.dumps({"src": src, "over": over, "J&F": round(100 * r.jf_mean, 2), "J": round(100 * r.j_mean, 2), "F": round(100 * r.f_mean, 2),
                  "per_seq": {k: round(100 * v[2], 1) for k, v in r.per_sequence().items()}, "sec": round(time.time() - t0), "frames": nf}))
