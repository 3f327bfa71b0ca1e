#!/usr/bin/env bash
# `vosseg batch` throughput (docs/RESULTS.md, issue 13): shell loop of `vosseg segment` against
# batch --workers 1 / 2 and --ray local --workers 2 / 1, two rounds, command wall time.
#   python tools/batch_clips.py ../shared/data CLIPS && bash tools/batch_throughput.sh CLIPS WORK
set -eu
clips=$(realpath "$1"); work=$2
cd "$clips"
for r in 1 2; do
  rm -rf "$work"; mkdir -p "$work"
  t0=$(date +%s.%N)
  for s in $(tail -n +2 jobs.csv | cut -d, -f1); do vosseg segment "$s" --mask "$s.png" --out "$work/loop/$s" > /dev/null 2>&1; done
  t1=$(date +%s.%N)
  vosseg batch jobs.csv --out-root "$work/w1" --json > "$work/r${r}_w1.json" 2>/dev/null
  t2=$(date +%s.%N)
  vosseg batch jobs.csv --out-root "$work/w2" --workers 2 --json > "$work/r${r}_w2.json" 2>/dev/null
  t3=$(date +%s.%N)
  vosseg batch jobs.csv --out-root "$work/ray2" --ray local --workers 2 --json > "$work/r${r}_ray2.json" 2>/dev/null
  t4=$(date +%s.%N)
  vosseg batch jobs.csv --out-root "$work/ray1" --ray local --workers 1 --json > "$work/r${r}_ray1.json" 2>/dev/null
  t5=$(date +%s.%N)
  echo "round $r loop $(echo "$t1-$t0"|bc) w1 $(echo "$t2-$t1"|bc) w2 $(echo "$t3-$t2"|bc) ray2 $(echo "$t4-$t3"|bc) ray1 $(echo "$t5-$t4"|bc)"
done
