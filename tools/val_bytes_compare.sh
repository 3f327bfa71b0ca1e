#!/bin/bash
# Byte-compare the davis16-train `val` masks of another build with this tree's (docs/RESULTS.md,
# "One clear house"): both with the same refiner file and one thread.
#   tools/val_bytes_compare.sh BASE_SRC REFINER.pt [OUT]
#   (BASE_SRC: src/ of a worktree of the build to compare with, e.g. `git worktree add /tmp/base df0336f`)
BASE=${1:?src/ of the other build}; REFINER=${2:?a refiner file both builds read}; OUT=${3:-/tmp/valcmp}
HERE=$(cd "$(dirname "$0")/.." && pwd)
D=$HERE/../shared/data/davis16-train
for s in $(python -c "import json; print(' '.join(json.load(open('$D/splits.json'))['val']))"); do
  (cd /tmp && OMP_NUM_THREADS=1 PYTHONPATH=$BASE python -m vossegcli.cli segment $D/videos/$s.mp4 --mask $D/masks/$s/00000.png \
      --out $OUT/base/$s --refiner $REFINER --threads 1 --force > /dev/null 2>&1)
  (cd /tmp && OMP_NUM_THREADS=1 PYTHONPATH=$HERE/src python -m vossegcli.cli segment $D/videos/$s.mp4 --mask $D/masks/$s/00000.png \
      --out $OUT/here/$s --refiner $REFINER --threads 1 --force > /dev/null 2>&1)
  python - "$OUT" "$s" <<'PY'
import pathlib, sys
out, s = sys.argv[1], sys.argv[2]
a = sorted(pathlib.Path(f"{out}/base/{s}").glob("[0-9]*.png")); b = pathlib.Path(f"{out}/here/{s}")
print(s, len(a), "frames,", sum(p.read_bytes() != (b / p.name).read_bytes() for p in a), "differ", flush=True)
PY
done
