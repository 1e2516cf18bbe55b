#!/usr/bin/env bash
# Renders the README's pictures with the embedded model: one stylization, and a row of the same
# photo with --norm in, bn, ln, gn (bn: the two sample photos form the batch). Needs Python + PIL
# only to paste the thumbnails into one row.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin=target/release/normstyle
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
$bin stylize assets/photos/chicago.jpg --style assets/styles/brushstrokes.jpg -o docs/chicago_brushstrokes.jpg --quality 85 --force -q
for n in in bn ln gn; do
  $bin stylize assets/photos/chicago.jpg assets/photos/golden_gate.jpg --style assets/styles/en_campo_gris.jpg \
    --norm $n -o "$tmp/$n" --force -q
done
python3 - "$tmp" <<'PY'
import sys
from PIL import Image, ImageDraw
tmp = sys.argv[1]
tiles = [("style", "assets/styles/en_campo_gris.jpg"), ("photo", "assets/photos/chicago.jpg")] + [
    (f"--norm {n}", f"{tmp}/{n}/chicago_stylized_en_campo_gris.png") for n in ("in", "bn", "ln", "gn")]
h = 200
ims = []
for label, path in tiles:
    im = Image.open(path).convert("RGB")
    im = im.resize((round(im.width * h / im.height), h), Image.LANCZOS)
    canvas = Image.new("RGB", (im.width, h + 24), "white")
    canvas.paste(im, (0, 24))
    ImageDraw.Draw(canvas).text((6, 6), label, fill="black")
    ims.append(canvas)
row = Image.new("RGB", (sum(i.width for i in ims) + 6 * (len(ims) - 1), h + 24), "white")
x = 0
for i in ims:
    row.paste(i, (x, 0)); x += i.width + 6
row.save("docs/norm_row.jpg", quality=85)
PY
echo docs/chicago_brushstrokes.jpg docs/norm_row.jpg
