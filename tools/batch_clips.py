"""Ten short 480p clips for the `vosseg batch` throughput figures (docs/RESULTS.md, issue 13): the
first 30 frames of the first ten davis16-train `train` sequences as JPEG folders, their first-frame
masks, and jobs.csv.   python tools/batch_clips.py ../shared/data OUT_DIR"""
import json
import sys
from pathlib import Path

from PIL import Image

from vossegcli.io.video import FrameReader

root, out = Path(sys.argv[1]) / "davis16-train", Path(sys.argv[2])
seqs = json.loads((root / "splits.json").read_text())["train"][:10]
jobs = ["input,mask"]
for seq in seqs:
    folder = out / seq
    folder.mkdir(parents=True, exist_ok=True)
    with FrameReader(root / "videos" / f"{seq}.mp4") as reader:
        for k, frame in enumerate(reader.frames()):
            if k >= 30:
                break
            Image.fromarray(frame.image).save(folder / f"{k:05d}.jpg", quality=95)
    Image.open(root / "masks" / seq / "00000.png").save(out / f"{seq}.png")
    jobs.append(f"{seq},{seq}.png")
(out / "jobs.csv").write_text("\n".join(jobs) + "\n")
