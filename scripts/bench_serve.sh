#!/usr/bin/env bash
# The slider-to-picture latency of `normstyle serve` (issue 22's speed figure): the release
# binary on a free port, the page in headless Chromium (tests/browser/serve_page.mjs: upload,
# then nine α moves at 512² with the style cached), the median printed as JSON with the CPU.
# Needs what scripts/test.sh installs (chromium, tests/browser/node_modules).
#   scripts/bench_serve.sh [SCREENSHOT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
shot=${1:-target/serve_bench.png}
cargo build --release --locked -q
grep -m1 'model name' /proc/cpuinfo
echo "avx512f: $(grep -o -m1 avx512f /proc/cpuinfo || echo no); threads ${RAYON_NUM_THREADS:-all}"
out=$(mktemp)
target/release/normstyle serve --port 0 >"$out" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 100); do [ -s "$out" ] && break; sleep 0.1; done
url=$(head -1 "$out")
(cd tests/browser && node serve_page.mjs "$url" "$PWD/../../assets/photos/golden_gate.jpg" \
    "$PWD/../../assets/styles/en_campo_gris.jpg" "$(realpath -m "../../$shot")")
