"""J&F of davis16-train sequences with ground-truth anchors, through ``vosseg segment``'s own path
(docs/RESULTS.md, "Several masks per object").

    python tools/anchors_eval.py OUT {first|mid|quarters} [val|train|real30-all] [--no-blend]

``first``: the first frame's mask only; ``mid``: also the ground truth of the middle frame;
``quarters``: also frames at 25 %, 50 % and 75 %. Prints J&F over all frames (the DAVIS protocol:
first and last excluded, anchors included) and over the frames that are not anchors. Refiner: the
shipped one (so on ``train`` sequences it has seen them; use ``val``).
"""
import json, sys, time
from pathlib import Path

from vossegcli.datasets.roots import davis16_root, split_sequences
from vossegcli.eval.davis import evaluate
from vossegcli.io.video import FrameReader
from vossegcli.run import anchors as anchor_blend
from vossegcli.run.segment import segment

out, mode = Path(sys.argv[1]), sys.argv[2]
split = sys.argv[3] if len(sys.argv) > 3 and not sys.argv[3].startswith("--") else "val"
blend = "--no-blend" not in sys.argv
anchor_blend.BLEND = blend
root = davis16_root(Path(__file__).resolve().parents[2] / "shared" / "data")
seqs = split_sequences(root, split)
t0 = time.time()
anchors_of = {}
for seq in seqs:
    video = root / "videos" / f"{seq}.mp4"
    with FrameReader(video) as r:
        n = r.info.num_frames
    frames = {"first": [0], "mid": [0, n // 2], "quarters": [0, n // 4, n // 2, (3 * n) // 4]}[mode]
    anchors_of[seq] = frames
    args = [f"{f}:{root / 'masks' / seq / f'{f:05d}.png'}" for f in frames]
    segment(video, args, out / seq, device="cpu", force=True)
r = evaluate(out, root / "masks", sequences=seqs)
print(json.dumps({"mode": mode, "blend": blend, "J&F": round(100 * r.jf_mean, 2), "J": round(100 * r.j_mean, 2),
                  "F": round(100 * r.f_mean, 2), "per_seq": {k: round(100 * v[2], 1) for k, v in r.per_sequence().items()},
                  "anchors": anchors_of, "sec": round(time.time() - t0)}))
