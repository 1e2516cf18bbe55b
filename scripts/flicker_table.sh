#!/usr/bin/env bash
# The README's flicker table and frame strips: two pans of the bundled golden_gate.jpg with
# known motion (examples/pan_clip.rs), stylized by the embedded Magenta model with
# --temporal 0, 0.5, 0.8, 0.9 and 0.95, measured with `normstyle video-metrics`.
#   scripts/flicker_table.sh [WORK_DIR]     (needs ffmpeg for the strips; ~2 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
cargo build --release --quiet --example pan_clip
cargo build --release --quiet
ns=target/release/normstyle
style=assets/styles/brushstrokes.jpg
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
echo
echo "| pan | --temporal | warping error | frame diff (out) | frame diff (in) |"
echo "|---|---|---|---|---|"
for spec in "aligned 4 0 1.0" "subpixel 2 0.5 1.005"; do
    set -- $spec
    name=$1
    target/release/examples/pan_clip "$work/$name" 320 192 24 "$2" "$3" "$4" >/dev/null
    for m in 0 0.5 0.8 0.9 0.95; do
        $ns stylize --frames "$work/$name/frames" --style $style -o "$work/$name/t$m" \
            --temporal "$m" -q --force
        json=$($ns video-metrics "$work/$name/frames" "$work/$name/t$m" --motion "$work/$name/motion.json")
        python3 -c 'import json,sys; v=json.loads(sys.argv[1]); print("| %s | %s | %.4f | %.4f | %.4f |" % (sys.argv[2], sys.argv[3], v["warping_error"], v["frame_diff_out"], v["frame_diff_in"]))' \
            "$json" "$name ($2, $3 px/frame, zoom $4)" "$m"
    done
done
# Frames 10, 11, 12 of the aligned pan: input, --temporal 0, --temporal 0.9 (rows).
d="$work/aligned"
row() { ffmpeg -v error -y -i "$1/0010.png" -i "$1/0011.png" -i "$1/0012.png" \
    -filter_complex "[0][1][2]hstack=inputs=3" "$2"; }
row "$d/frames" "$work/r0.png"; row "$d/t0" "$work/r1.png"; row "$d/t0.9" "$work/r2.png"
ffmpeg -v error -y -i "$work/r0.png" -i "$work/r1.png" -i "$work/r2.png" \
    -filter_complex "[0][1][2]vstack=inputs=3" -q:v 3 docs/flicker_strip.jpg
echo
echo "wrote docs/flicker_strip.jpg (rows: input, --temporal 0, --temporal 0.9; frames 10-12)"
