#!/usr/bin/env bash
# Runs benches/norm.rs and scripts/bench_norm.py with the same thread count and prints
# `layer  normstyle_ms  pytorch_ms  ratio` (medians; ratio = normstyle / PyTorch).
#   scripts/bench_norm.sh [THREADS]
set -euo pipefail
threads=${1:-2}
cd "$(dirname "$0")/.."
ours=$(RAYON_NUM_THREADS=$threads cargo bench -q --bench norm 2>/dev/null)
theirs=$(python3 scripts/bench_norm.py --threads "$threads")
printf '%-20s %12s %12s %7s\n' layer normstyle_ms pytorch_ms ratio
while read -r name ms; do
  # divan prints: ├─ name  fastest │ slowest │ median │ mean │ samples │ iters
  line=$(grep -E "[├╰]─ $name " <<<"$ours" | head -1)
  med=$(awk -F'│' '{print $3}' <<<"$line" | xargs)
  val=${med% *}; unit=${med##* }
  case $unit in
    ms) our_ms=$val ;; µs) our_ms=$(awk "BEGIN{print $val/1000}") ;; s) our_ms=$(awk "BEGIN{print $val*1000}") ;; *) our_ms=nan ;;
  esac
  printf '%-20s %12.2f %12.2f %7.2f\n' "$name" "$our_ms" "$ms" "$(awk "BEGIN{print $our_ms/$ms}")"
done <<<"$theirs"
