#!/usr/bin/env python3
"""Writes tests/fixtures/metrics.json: SSIM values from scikit-image (the reference the compare
metrics follow) and color-statistic distances from numpy, on small deterministic images that
tests/compare_metrics.rs rebuilds with the same formula.

    pip install scikit-image numpy
    python3 scripts/gen_metric_fixtures.py
"""
import json
import pathlib

import numpy as np
import skimage
from skimage.metrics import structural_similarity

ROOT = pathlib.Path(__file__).resolve().parent.parent


def image(h, w, seed):
    """(3, h, w) in [0, 1]: a smooth deterministic pattern, rounded to float32."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = [0.5 + 0.5 * np.sin(0.37 * x * (k + 1) + 0.23 * y * (seed + 1) + k + seed) * np.cos(0.11 * y - 0.05 * x * k)
             for k in range(3)]
    return np.stack(chans).astype(np.float32).astype(np.float64)


def luma(img):
    return 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]


cases = []
for (h, w, sa, sb) in [(24, 32, 1, 2), (17, 29, 3, 3), (40, 21, 4, 7), (11, 11, 5, 6)]:
    a, b = image(h, w, sa), image(h, w, sb)
    b = 0.7 * b + 0.3 * a
    s = structural_similarity(luma(a), luma(b), gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False, data_range=1.0)
    stats = lambda im: [(c.mean(), c.std()) for c in im]
    cd = np.sqrt(sum((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 for p, q in zip(stats(a), stats(b))) / 6)
    cases.append({"h": h, "w": w, "seed_a": sa, "seed_b": sb, "ssim": float(s), "color_distance": float(cd)})
out = ROOT / "tests" / "fixtures" / "metrics.json"
out.write_text(json.dumps({"generator": "scripts/gen_metric_fixtures.py", "skimage": skimage.__version__,
                           "cases": cases}, indent=1) + "\n")
print(out, cases)
