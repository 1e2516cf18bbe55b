#!/usr/bin/env python3
"""Writes tests/fixtures/images/: small images in unusual encodings for the bad-input corpus
(tests/bad_inputs.rs): CMYK JPEG, 16-bit RGB PNG, paletted PNG, gray+alpha PNG, a PNG whose
header declares 100000×100000 pixels (a decompression bomb), an EXIF-rotated JPEG.

    pip install pillow numpy
    python3 scripts/gen_image_fixtures.py
"""
import pathlib
import struct
import zlib

import numpy as np
from PIL import Image

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "images"
OUT.mkdir(parents=True, exist_ok=True)
y, x = np.mgrid[0:24, 0:32]
rgb = np.stack([x * 8, y * 10, (x + y) * 4], -1).astype(np.uint8)
Image.fromarray(rgb).convert("CMYK").save(OUT / "cmyk.jpg", quality=90)
# 16-bit RGB PNG written by hand (Pillow cannot write 16-bit RGB).
raw = b"".join(b"\x00" + (rgb[r].astype(">u2") * 257).tobytes() for r in range(24))
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
png16 = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 24, 16, 2, 0, 0, 0)) + \
    chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
(OUT / "rgb16.png").write_bytes(png16)
Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16).save(OUT / "paletted.png")
la = np.stack([rgb[..., 0], (x * 8).astype(np.uint8)], -1)
Image.fromarray(la, "LA").save(OUT / "gray_alpha.png")
# A bomb: the header says 100000×100000, the data is a few bytes.
bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)) + \
    chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
(OUT / "bomb.png").write_bytes(bomb)
img = Image.fromarray(rgb)
exif = img.getexif()
exif[0x0112] = 6  # rotate 90° clockwise when displayed
img.save(OUT / "rotated.jpg", exif=exif, quality=90)
for p in sorted(OUT.iterdir()):
    print(p.name, p.stat().st_size)
