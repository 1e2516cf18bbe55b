#!/usr/bin/env bash
# A/B timing of two normstyle binaries (e.g. before and after a change) on the same machine:
# rounds alternate A and B (ABBA), each `normstyle bench MODEL --size N` with one warm-up and RUNS timed
# runs; prints the CPU and the medians. Build the "before" binary from a worktree:
#   git worktree add /tmp/before REV && (cd /tmp/before && cargo build --release)
#   scripts/bench_ab.sh /tmp/before/target/release/normstyle target/release/normstyle adain 512
set -euo pipefail
a=${1:?binary A} b=${2:?binary B} model=${3:-adain} size=${4:-512}
rounds=${ROUNDS:-3} runs=${RUNS:-3} threads=${RAYON_NUM_THREADS:-2}
grep -m1 'model name' /proc/cpuinfo
echo "avx512f: $(grep -o -m1 avx512f /proc/cpuinfo || echo no); threads $threads; $model ${size}²"
times() { RAYON_NUM_THREADS=$threads "$1" bench "$model" --size "$size" --warmup 1 --runs "$runs" |
  python3 -c 'import json,sys; print(*[json.loads(l)["seconds"] for l in sys.stdin])'; }
ta=() tb=()
# ABBA order: the binary that runs second in a round was measured up to 10 % slower (caches,
# clocks), so each goes first in every other round.
for r in $(seq "$rounds"); do
  if ((r % 2)); then ta+=($(times "$a")); tb+=($(times "$b"))
  else tb+=($(times "$b")); ta+=($(times "$a")); fi
done
python3 - "${#ta[@]}" "${ta[@]}" "${tb[@]}" <<'PY'
import statistics, sys
n = int(sys.argv[1]); a = list(map(float, sys.argv[2:2 + n])); b = list(map(float, sys.argv[2 + n:]))
ma, mb = statistics.median(a), statistics.median(b)
print(f"A median {ma:.3f} s  B median {mb:.3f} s  B/A {mb / ma:.3f}  ({n} runs each)")
PY
