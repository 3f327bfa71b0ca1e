"""Wall time of ``--correct`` against a full re-run, and the keyframes' disk (docs/RESULTS.md).

    python tools/correction_cost.py WORK [SEQUENCE]

Builds a 317-frame clip from one davis16-train sequence played forward, backward, forward,
backward (a continuous video with ground truth for every frame; default car-turn, 854x480), then
times, each through the CLI as a user runs it:

1. the first run (first-frame mask);
2. a correction at 50 % and one at 80 % of the clip on a copy of that run (the ground truth of
   that frame as the fix);
3. the full re-run a user would otherwise do: both masks given from the start.

Prints one JSON line: seconds of each, the ratios, the keyframes' disk and the mean IoU after the
corrected frame. Run it alone on the machine (it times).
"""
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vossegcli.io.palette import read_label_png, write_label_png
from vossegcli.io.video import open_frames

work = Path(sys.argv[1])
seq = sys.argv[2] if len(sys.argv) > 2 else "car-turn"
data = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis16-train"
frames_dir, gt_dir = work / "frames", work / "gt"
if not frames_dir.is_dir():
    with open_frames(data / "videos" / f"{seq}.mp4") as reader:
        images = [f.image for f in reader]
    n = len(images)
    order = list(range(n)) + list(range(n - 2, 0, -1)) + list(range(n)) + list(range(n - 2, 0, -1))
    order = order[: 4 * n - 3]
    frames_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    for t, k in enumerate(order):
        Image.fromarray(images[k]).save(frames_dir / f"{t:05d}.png")
        write_label_png(gt_dir / f"{t:05d}.png", read_label_png(data / "masks" / seq / f"{k:05d}.png"))
count = len(list(frames_dir.glob("*.png")))


def vosseg(*args) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vossegcli.cli", "segment", str(frames_dir), *map(str, args)], check=True,
                   capture_output=True, text=True)
    return time.perf_counter() - start


def mean_iou(folder: Path, frames: range) -> float:
    return float(np.mean([
        (lambda p, g: np.count_nonzero(p & g) / max(np.count_nonzero(p | g), 1))(
            read_label_png(folder / f"{t:05d}.png") == 1, read_label_png(gt_dir / f"{t:05d}.png") == 1)
        for t in frames]))


first = f"0:{gt_dir / '00000.png'}"
row = {"sequence": seq, "frames": count}
run = work / "run"
shutil.rmtree(run, ignore_errors=True)
row["first_run_s"] = round(vosseg("--mask", first, "--out", run), 1)
row["keyframes"] = sorted(int(p.stem) for p in (run / ".vosseg-keyframes").glob("*.pt"))
row["keyframes_mb"] = round(sum(p.stat().st_size for p in (run / ".vosseg-keyframes").glob("*.pt")) / 2**20, 1)
for share in (0.5, 0.8):
    frame = int(round(share * (count - 1)))
    fix = f"{frame}:{gt_dir / f'{frame:05d}.png'}"
    copy = work / f"correct{int(share * 100)}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run, copy)
    seconds = vosseg("--mask", first, "--out", copy, "--correct", fix)
    full = work / f"full{int(share * 100)}"
    shutil.rmtree(full, ignore_errors=True)
    full_seconds = vosseg("--mask", first, "--mask", fix, "--out", full)
    after = range(frame + 1, count)
    row[f"at_{int(share * 100)}"] = {
        "frame": frame, "correct_s": round(seconds, 1), "full_rerun_with_both_masks_s": round(full_seconds, 1),
        "ratio_to_full_rerun": round(seconds / full_seconds, 3), "ratio_to_first_run": round(seconds / row["first_run_s"], 3),
        "iou_after_before_correction": round(mean_iou(run, after), 4), "iou_after_corrected": round(mean_iou(copy, after), 4),
    }
print(json.dumps(row))
