#!/bin/bash
# side by side: today's main (/tmp/base, PYTHONPATH) vs this tree, alternating, 2 rounds each
# usage: tools/ratio.sh BASE_SRC MASK_DIR  (BASE_SRC: src/ of a worktree of the main to compare with)
HERE=$(cd "$(dirname "$0")" && pwd)
BASE=${1:-/tmp/base/src}; MASKS=${2:-/tmp/bench}
V=$HERE/../../shared/data/davis16-train/videos/soccerball.mp4
cd "$MASKS"
for round in 1 2; do
  for n in 1 2; do
    PYTHONPATH=$BASE python -m vossegcli.cli benchmark $V --mask mask$n.png --device cpu --frames 40 --json > r${round}_base_$n.json 2>/dev/null
    python -m vossegcli.cli benchmark $V --mask mask$n.png --device cpu --frames 40 --json $EXTRA > r${round}_new_$n.json 2>/dev/null
  done
done
for f in r*_*.json; do python -c "import json;d=json.load(open('$f'));print('$f', d['fps'], d['dtype'] if 'dtype' in d else '', d['stage_ms_per_frame'], d['memory']['peak_rss_mb'])"; done
