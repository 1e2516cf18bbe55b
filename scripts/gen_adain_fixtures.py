#!/usr/bin/env python3
"""Writes the AdaIN parity fixtures of the test suite:

- tests/fixtures/adain_parity.safetensors: reference outputs of pytorch-AdaIN (net.py's
  architecture, function.py's calc_mean_std / adaptive_instance_normalization / coral, test.py's
  style_transfer with interpolation and alpha) for full-size random weights and small random
  images, all drawn from the counter-based splitmix64 stream below — tests/adain_parity.rs draws
  the very same values in Rust, so only the small outputs are committed. Computed in float64
  (the port runs in float32; the tests state the tolerance).
- tests/fixtures/pth/{legacy,zip}.pth: a few tensors (f32, f16, f64, int64, a transposed view, a
  view with a storage offset, a scalar) saved by torch.save in the legacy format and the zip
  format, and tests/fixtures/pth/expected.safetensors with their values, for the reader tests.

Also covered: the Ada-LN/GN/BN swaps (docs/ARCHITECTURE.md §3) and the official Lua tool's spatial control
(mask resized nearest, sampling pixel centers, to the relu4_1 map; each region aligned with its
own statistics). Running the script again rewrites the same values (the safetensors header
order, the legacy file's storage keys, which are memory addresses, and zip.pth's serialization
id vary between runs).

- tests/fixtures/ops_parity.safetensors: PyTorch's ReflectionPad2d(1, 2, 3), MaxPool2d(2, 2,
  ceil_mode=True) and nearest ×2 upsampling on random maps of odd and even sizes.

    pip install torch safetensors numpy
    python3 scripts/gen_adain_fixtures.py
"""
import math
import pathlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
torch.set_default_dtype(torch.float64)
EPS = 1e-5
MASK64 = (1 << 64) - 1


class Stream:
    """splitmix64 as a counter: value i is mix(seed + (i + 1)·γ); uniform = top 53 bits / 2⁵³."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def uniform(self, n):
        g = np.uint64(0x9E3779B97F4A7C15)
        with np.errstate(over="ignore"):
            z = np.uint64(self.state) + (np.arange(1, n + 1, dtype=np.uint64) * g)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
        self.state = (self.state + n * 0x9E3779B97F4A7C15) & MASK64
        return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


VGG_CONVS = [(0, 3, 3, 1), (2, 3, 64, 3), (5, 64, 64, 3), (9, 64, 128, 3), (12, 128, 128, 3),
             (16, 128, 256, 3), (19, 256, 256, 3), (22, 256, 256, 3), (25, 256, 256, 3),
             (29, 256, 512, 3)]
DEC_CONVS = [(1, 512, 256), (5, 256, 256), (8, 256, 256), (11, 256, 256), (14, 256, 128),
             (18, 128, 128), (21, 128, 64), (25, 64, 64), (28, 64, 3)]


def random_weights(stream):
    """He-uniform weights (bound √(6/fan_in)) and biases in ±0.05, rounded to float32, in the
    order VGG convs then decoder convs, weight before bias."""
    vgg, dec = {}, {}
    convs = [(vgg, i, cin, cout, k) for i, cin, cout, k in VGG_CONVS] + \
            [(dec, i, cin, cout, 3) for i, cin, cout in DEC_CONVS]
    for d, i, cin, cout, k in convs:
        bound = math.sqrt(6.0 / (cin * k * k))
        w = (2.0 * stream.uniform(cout * cin * k * k) - 1.0) * bound
        b = (2.0 * stream.uniform(cout) - 1.0) * 0.05
        d[f"{i}.weight"] = torch.from_numpy(w.astype(np.float32).astype(np.float64)).reshape(cout, cin, k, k)
        d[f"{i}.bias"] = torch.from_numpy(b.astype(np.float32).astype(np.float64))
    return vgg, dec


def random_image(stream, h, w):
    """(1, 3, h, w) in [0, 1), channels correlated (so CORAL has a covariance to match)."""
    shared = stream.uniform(h * w).reshape(h, w)
    own = stream.uniform(3 * h * w).reshape(3, h, w)
    img = 0.6 * shared[None] + 0.4 * own
    return torch.from_numpy(img.astype(np.float32).astype(np.float64))[None]


def build(vgg_w, dec_w):
    """net.py's vgg (to relu4_1) and decoder with the given weights."""
    def conv(cin, cout, k):
        return nn.Conv2d(cin, cout, k)
    vgg = nn.Sequential(
        conv(3, 3, 1), nn.ReflectionPad2d(1), conv(3, 64, 3), nn.ReLU(),  # relu1_1
        nn.ReflectionPad2d(1), conv(64, 64, 3), nn.ReLU(), nn.MaxPool2d(2, 2, 0, ceil_mode=True),
        nn.ReflectionPad2d(1), conv(64, 128, 3), nn.ReLU(),  # relu2_1
        nn.ReflectionPad2d(1), conv(128, 128, 3), nn.ReLU(), nn.MaxPool2d(2, 2, 0, ceil_mode=True),
        nn.ReflectionPad2d(1), conv(128, 256, 3), nn.ReLU(),  # relu3_1
        nn.ReflectionPad2d(1), conv(256, 256, 3), nn.ReLU(),
        nn.ReflectionPad2d(1), conv(256, 256, 3), nn.ReLU(),
        nn.ReflectionPad2d(1), conv(256, 256, 3), nn.ReLU(), nn.MaxPool2d(2, 2, 0, ceil_mode=True),
        nn.ReflectionPad2d(1), conv(256, 512, 3), nn.ReLU(),  # relu4_1
    )
    decoder = nn.Sequential(
        nn.ReflectionPad2d(1), conv(512, 256, 3), nn.ReLU(), nn.Upsample(scale_factor=2, mode="nearest"),
        nn.ReflectionPad2d(1), conv(256, 256, 3), nn.ReLU(),
        nn.ReflectionPad2d(1), conv(256, 256, 3), nn.ReLU(),
        nn.ReflectionPad2d(1), conv(256, 256, 3), nn.ReLU(),
        nn.ReflectionPad2d(1), conv(256, 128, 3), nn.ReLU(), nn.Upsample(scale_factor=2, mode="nearest"),
        nn.ReflectionPad2d(1), conv(128, 128, 3), nn.ReLU(),
        nn.ReflectionPad2d(1), conv(128, 64, 3), nn.ReLU(), nn.Upsample(scale_factor=2, mode="nearest"),
        nn.ReflectionPad2d(1), conv(64, 64, 3), nn.ReLU(),
        nn.ReflectionPad2d(1), conv(64, 3, 3),
    )
    vgg.load_state_dict(vgg_w)
    decoder.load_state_dict(dec_w)
    return vgg.eval(), decoder.eval()


# --- function.py, verbatim in its math --------------------------------------------------------
def calc_mean_std(feat, eps=EPS):
    n, c = feat.shape[:2]
    var = feat.view(n, c, -1).var(dim=2) + eps
    return feat.view(n, c, -1).mean(dim=2).view(n, c, 1, 1), var.sqrt().view(n, c, 1, 1)


def adaptive_instance_normalization(content, style):
    s_mean, s_std = calc_mean_std(style)
    c_mean, c_std = calc_mean_std(content)
    return (content - c_mean) / c_std * s_std + s_mean


def coral(source, target):
    def flat(f):
        f = f.view(3, -1)
        return f, f.mean(dim=-1, keepdim=True), f.std(dim=-1, keepdim=True)

    def mat_sqrt(x):
        u, d, v = torch.svd(x)
        return u @ d.pow(0.5).diag() @ v.t()

    s, s_mean, s_std = flat(source)
    s_norm = (s - s_mean) / s_std
    s_cov = s_norm @ s_norm.t() + torch.eye(3)
    t, t_mean, t_std = flat(target)
    t_norm = (t - t_mean) / t_std
    t_cov = t_norm @ t_norm.t() + torch.eye(3)
    out = mat_sqrt(t_cov) @ (torch.inverse(mat_sqrt(s_cov)) @ s_norm)
    return (out * t_std + t_mean).view(source.shape)


# --- the norm swaps of docs/ARCHITECTURE.md §3 (unbiased variance + ε, as calc_mean_std) ------------------
def stats(feats, kind, groups=32):
    """Per-(sample, channel) mean/std maps for a list of (1, C, H, W) maps pooled as `kind`."""
    if kind == "in":
        return [calc_mean_std(f) for f in feats]
    if kind == "bn":
        c = feats[0].shape[1]
        allv = torch.cat([f.reshape(c, -1) for f in feats], dim=1)
        m = allv.mean(dim=1).view(1, c, 1, 1)
        s = (allv.var(dim=1) + EPS).sqrt().view(1, c, 1, 1)
        return [(m, s) for _ in feats]
    out = []
    for f in feats:
        c = f.shape[1]
        g = 1 if kind == "ln" else math.gcd(groups, c)
        v = f.reshape(g, -1)
        m = v.mean(dim=1).repeat_interleave(c // g).view(1, c, 1, 1)
        s = (v.var(dim=1) + EPS).sqrt().repeat_interleave(c // g).view(1, c, 1, 1)
        out.append((m, s))
    return out


def align(contents, style, kind):
    """Every content aligned to the style's statistics (a style is its own batch of one)."""
    (sm, ss), = stats([style], "in" if kind == "bn" else kind)
    return [(f - m) / s * ss + sm for f, (m, s) in zip(contents, stats(contents, kind))]


def mask_resized(mask, h, w):
    mh, mw = mask.shape
    ys = np.minimum((2 * np.arange(h) + 1) * mh // (2 * h), mh - 1)
    xs = np.minimum((2 * np.arange(w) + 1) * mw // (2 * w), mw - 1)
    return mask[np.ix_(ys, xs)] >= 0.5


def masked(content_f, styles_f, mask, kind):
    _, c, h, w = content_f.shape
    white = torch.from_numpy(mask_resized(mask, h, w).reshape(-1))
    flat = content_f.reshape(1, c, 1, h * w)
    out = torch.zeros_like(flat)
    for sel, s in ((white, styles_f[0]), (~white, styles_f[1])):
        if sel.sum() > 0:
            out[..., sel] = align([flat[..., sel]], s, kind)[0]
    return out.view(1, c, h, w)


def main():
    stream = Stream(2017)
    vgg_w, dec_w = random_weights(stream)
    vgg, dec = build(vgg_w, dec_w)
    content1 = random_image(stream, 24, 40)
    content2 = random_image(stream, 24, 40)
    odd = random_image(stream, 21, 37)
    style1 = random_image(stream, 32, 32)
    style2 = random_image(stream, 40, 24)
    mask = stream.uniform(24 * 40).reshape(24, 40)
    mask = (mask > 0.5).astype(np.float64)
    mask[:, :20] = 1.0  # a left half that is surely white

    out = {}
    with torch.no_grad():
        f = lambda x: vgg(x)
        fc1, fc2, fs1, fs2 = f(content1), f(content2), f(style1), f(style2)
        crop = lambda y, x: y[..., : x.shape[2], : x.shape[3]]
        out["plain"] = dec(adaptive_instance_normalization(fc1, fs1))
        t = adaptive_instance_normalization(fc1, fs1)
        out["alpha06"] = dec(0.6 * t + 0.4 * fc1)
        out["interp"] = dec(0.25 * adaptive_instance_normalization(fc1, fs1)
                            + 0.75 * adaptive_instance_normalization(fc1, fs2))
        out["coral"] = dec(adaptive_instance_normalization(fc1, f(coral(style1[0], content1[0])[None])))
        fo = f(odd)
        out["odd"] = crop(dec(adaptive_instance_normalization(fo, fs1)), odd)
        for kind in ("ln", "gn"):
            out[f"norm_{kind}"] = dec(align([fc1], fs1, kind)[0])
        bn = align([fc1, fc2], fs1, "bn")
        out["norm_bn_c1"], out["norm_bn_c2"] = dec(bn[0]), dec(bn[1])
        out["mask"] = dec(masked(fc1, [fs1, fs2], mask, "in"))
        out["mask_alpha05"] = dec(0.5 * masked(fc1, [fs1, fs2], mask, "in") + 0.5 * fc1)
        out["relu4_1_content1"] = fc1
    tensors = {k: v.float().contiguous() for k, v in out.items()}
    tensors["mask_input"] = torch.from_numpy(mask.astype(np.float32))  # gray values, 40×24
    save_file(dict(sorted(tensors.items())), str(FIX / "adain_parity.safetensors"), metadata={
        "generator": "scripts/gen_adain_fixtures.py", "seed": "2017", "torch": torch.__version__.split("+")[0]})
    for k, v in sorted(out.items()):
        print(f"{k:18} {tuple(v.shape)} range [{v.min():.3f}, {v.max():.3f}]")

    # --- the ops (PyTorch's own modules, float32) ----------------------------------------------
    g = torch.Generator().manual_seed(3)
    ops = {}
    for i, (h, w) in enumerate([(5, 7), (6, 6), (9, 4), (2, 3)]):
        x = torch.randn(2, 3, h, w, generator=g, dtype=torch.float32)
        ops[f"x{i}"] = x
        for p in (1, 2, 3):
            if p < min(h, w):
                ops[f"reflect{p}_{i}"] = nn.ReflectionPad2d(p)(x)
        ops[f"maxpool_{i}"] = nn.MaxPool2d(2, 2, 0, ceil_mode=True)(x)
        ops[f"up_{i}"] = F.interpolate(x, scale_factor=2, mode="nearest")
    save_file({k: v.contiguous() for k, v in sorted(ops.items())}, str(FIX / "ops_parity.safetensors"),
              metadata={"generator": "scripts/gen_adain_fixtures.py"})

    # --- the .pth reader fixtures ------------------------------------------------------------
    pth = FIX / "pth"
    pth.mkdir(exist_ok=True)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 8 - 1
    sd = {
        "conv.weight": base.reshape(2, 3, 2, 2).clone(),
        "half": (base[:2] * 3).half(),
        "double": base.double()[1:3, 1:4],  # a view with a storage offset and a row stride
        "transposed": base.t(),  # non-contiguous
        "scalar": torch.tensor(2.5),
        "steps": torch.tensor([3, 1, 4], dtype=torch.int64),
        "shared_a": base[0],  # two views of one storage
    }
    torch.save(sd, str(pth / "legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save(sd, str(pth / "zip.pth"))
    save_file({k: v.contiguous() for k, v in sd.items()}, str(pth / "expected.safetensors"))


if __name__ == "__main__":
    main()
