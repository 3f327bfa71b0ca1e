import time, numpy as np, json
from vossegcli.io.video import open_frames
from vossegcli.io.palette import read_label_png
from vossegcli.engine.segmenter import Segmenter
from vossegcli.engine.config import preset_config
import sys
long = sys.argv[1] if len(sys.argv) > 1 else "long300"  # made by make_long.py (docs/RESULTS.md)
m = read_label_png(long + "_mask.png")
out = {}
for preset in ("default", "fast"):
    seg = Segmenter(preset_config(preset), device="cpu")
    for nobj, mask in ((1, np.where(m == 1, 1, 0).astype(np.uint8)), (2, m)):
        st = seg.new_state()
        with open_frames(long + ".mp4") as r:
            for i, f in enumerate(r):
                seg.step(st, f.image, mask if i == 0 else None)
                if i + 1 in (10, 50, 100):
                    t = time.perf_counter(); size = st.save("state-size.pt"); dt = time.perf_counter() - t
                    t = time.perf_counter(); seg.load_state("state-size.pt"); dl = time.perf_counter() - t
                    out[f"{preset} {nobj}obj frame{i+1}"] = {"MB": round(size / 2**20, 1), "MB_per_object": round(size / 2**20 / nobj, 1), "save_ms": round(dt * 1000), "load_ms": round(dl * 1000)}
                if i + 1 == 100:
                    break
print(json.dumps(out, indent=1))
