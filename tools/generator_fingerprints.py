"""Fingerprints of every synthetic-data generator: sha256 of the frames and labels of a few clips of
each (val-synth, auto-multi, val-lost, the instance trainer, the refiner trainer's realistic clips,
the primary-object pairs, the --auto clips), written as JSON. Run on two builds and compare the
files: equal means the generators are byte-identical.

    PYTHONPATH=BUILD/src python tools/generator_fingerprints.py OUT.json [--data ../shared/data]
"""
import hashlib, json, random, sys, tempfile
from pathlib import Path
import numpy as np
DATA = Path(sys.argv[sys.argv.index("--data") + 1] if "--data" in sys.argv else Path(__file__).resolve().parents[2] / "shared" / "data")
out = {}
def h(arrs):
    m = hashlib.sha256()
    for a in arrs:
        a = np.ascontiguousarray(a); m.update(str(a.dtype).encode()); m.update(str(a.shape).encode()); m.update(a.tobytes())
    return m.hexdigest()[:16]
from vossegcli.eval import synth
try:
    from vossegcli.datasets.cutouts import DutsPool
    from vossegcli.datasets.roots import duts_root
    pool = DutsPool(duts_root(DATA))
except ImportError:  # a build before the one cut-out kit
    pool = synth._Pool(synth.duts_root(DATA))
for s in synth.SCENARIOS:
    for i in (0, 5):
        f, l = synth.render_clip(pool, s, i)
        out[f"synth-{s}-{i}"] = h(f + l)
from vossegcli.eval import auto_multi, lost
for i in range(3):
    c = auto_multi.multi_clip(pool, i); out[f"multi-{i}"] = h(c.frames + c.labels)
for s in lost.SYNTH_SCENARIOS:
    c = lost.synthetic_clip(pool, s, 1); out[f"lost-{s}"] = h(c.frames + c.labels)
from vossegcli.train import instances
tp = instances._training_pool(DATA)
c = auto_multi.multi_clip(tp, 7); out["inst-multi-7"] = h(c.frames + c.labels)
from vossegcli.train.data import ObjectPool, synthetic_clip
op = ObjectPool(DATA, ("ecssd", "duts"))
for s in range(4):
    c = synthetic_clip(op, random.Random(s), num_frames=4, realistic=True, max_objects=3); out[f"train-{s}"] = h(c.frames + c.labels)
from vossegcli.train.primary import common_object_pair, saliency_images
bgs = saliency_images(DATA); rng = random.Random(3)
for k in range(4):
    out[f"pair-{k}"] = h([np.asarray(x) for x in common_object_pair(op, bgs, rng)])
from vossegcli.eval.auto_synth import build_clips
with tempfile.TemporaryDirectory() as d:
    root = build_clips(DATA, Path(d))
    from PIL import Image
    files = sorted(p for p in root.rglob("*.png"))
    out["auto-synth"] = h([np.asarray(Image.open(p)) for p in files[:200]])
json.dump(out, open(sys.argv[1], "w"), indent=1)
print(len(out), "fingerprints")
