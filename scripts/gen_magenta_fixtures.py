#!/usr/bin/env python3
"""Writes tests/fixtures/magenta_parity.safetensors: reference outputs of the Magenta networks on
small inputs, computed by an independent implementation (PyTorch functional ops, float64) from the
converted weights in models/magenta/ (docs/ARCHITECTURE.md §5).

Before writing, when ../shared/fixtures/magenta exists beside the repository, the reference is
checked against those float-reference outputs (made from the ONNX graphs), so the fixtures also
vouch for the importer. Running the script again rewrites an identical file.

    pip install torch safetensors numpy pillow
    python3 scripts/gen_magenta_fixtures.py
"""
import json
import pathlib

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "fixtures" / "magenta"
OUT = ROOT / "tests" / "fixtures" / "magenta_parity.safetensors"
torch.set_default_dtype(torch.float64)
W = {k: v.double() for name in ("arbitrary_predict", "arbitrary_transform", "multistyle26")
     for k, v in load_file(str(ROOT / "models" / "magenta" / f"{name}.safetensors")).items()}
EPS = 1e-5


def same_pad(x, k, s):
    def tot(n):
        return max((-(-n // s) - 1) * s + k - n, 0)
    th, tw = tot(x.shape[2]), tot(x.shape[3])
    return F.pad(x, (tw // 2, tw - tw // 2, th // 2, th - th // 2))


def predictor(x):
    relu6 = lambda t: t.clamp(0, 6)
    x = relu6(F.conv2d(same_pad(x, 3, 2), W["predictor.stem.weight"], W["predictor.stem.bias"], stride=2))
    cfg = [(1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 32, 1), (6, 64, 2), (6, 64, 1),
           (6, 64, 1), (6, 64, 1), (6, 96, 1), (6, 96, 1), (6, 96, 1), (6, 160, 2), (6, 160, 1), (6, 160, 1),
           (6, 320, 1)]
    cin = 32
    for i, (t, cout, s) in enumerate(cfg):
        p = f"predictor.blocks.{i}"
        h = x
        if t != 1:
            h = relu6(F.conv2d(h, W[f"{p}.expand.weight"], W[f"{p}.expand.bias"]))
        h = relu6(F.conv2d(same_pad(h, 3, s), W[f"{p}.depthwise.weight"], W[f"{p}.depthwise.bias"], stride=s,
                           groups=h.shape[1]))
        h = F.conv2d(h, W[f"{p}.project.weight"], W[f"{p}.project.bias"])
        x = x + h if (s == 1 and cin == cout) else h
        cin = cout
    x = relu6(F.conv2d(x, W["predictor.head.weight"], W["predictor.head.bias"]))
    return x.mean((2, 3)) @ W["predictor.bottleneck.weight"].T


def stats(xs, kind):
    """(mean, var) per map and channel, biased variance, pooled by kind (in, ln, gn:G, bn)."""
    c = xs[0].shape[1]
    if kind == "bn":
        flat = torch.cat([x.reshape(c, -1) for x in xs], 1)
        m, v = flat.mean(1), flat.var(1, unbiased=False)
        return [(m, v)] * len(xs)
    g = {"in": c, "ln": 1}.get(kind) or np.gcd(int(kind.split(":")[1]), c)
    out = []
    for x in xs:
        r = x.reshape(g, -1)
        out.append((r.mean(1).repeat_interleave(c // g), r.var(1, unbiased=False).repeat_interleave(c // g)))
    return out


def cin(xs, kind, gb):
    return [((x - m.view(1, -1, 1, 1)) / (v.view(1, -1, 1, 1) + EPS).sqrt()) * g.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)
            for x, (m, v), (g, b) in zip(xs, stats(xs, kind), gb)]


def conv_reflect(x, w, b=None, stride=1):
    p = w.shape[-1] // 2
    return F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), w, b, stride=stride)


def skeleton(xs, kind, prefix, blocks, contract_norm, gb_of):
    k = [0]

    def norm(ys):
        r = cin(ys, kind, gb_of(k[0]))
        k[0] += 1
        return r

    x = xs
    for i in range(1, 4):
        bias = W.get(f"{prefix}.contract.conv{i}.bias")
        x = [conv_reflect(t, W[f"{prefix}.contract.conv{i}.weight"], bias, 1 if i == 1 else 2) for t in x]
        if contract_norm:
            x = norm(x)
        x = [t.relu() for t in x]
    for i in range(blocks):
        h = [t.relu() for t in norm([conv_reflect(t, W[f"{prefix}.residual.{i}.conv1.weight"]) for t in x])]
        h = norm([conv_reflect(t, W[f"{prefix}.residual.{i}.conv2.weight"]) for t in h])
        x = [a + b for a, b in zip(x, h)]
    for i in range(1, 4):
        if i < 3:
            x = [F.interpolate(t, scale_factor=2, mode="nearest") for t in x]
        x = norm([conv_reflect(t, W[f"{prefix}.expand.conv{i}.weight"]) for t in x])
        x = [t.relu() if i < 3 else torch.sigmoid(t) for t in x]
    return [y[:, :, :t.shape[2], :t.shape[3]] for y, t in zip(x, xs)]


def norm_names(prefix, blocks, contract_norm):
    names = [f"{prefix}.contract.conv{i}.norm" for i in range(1, 4)] if contract_norm else []
    names += [f"{prefix}.residual.{i}.conv{j}.norm" for i in range(blocks) for j in (1, 2)]
    return names + [f"{prefix}.expand.conv{i}.norm" for i in range(1, 4)]


def transformer(xs, vs, kind):
    names = norm_names("transformer", 5, False)

    def gb(k):
        p = names[k]
        return [(W[f"{p}.gamma_proj.weight"] @ v + W[f"{p}.gamma_proj.bias"],
                 W[f"{p}.beta_proj.weight"] @ v + W[f"{p}.beta_proj.bias"]) for v in vs]
    return skeleton(xs, kind, "transformer", 5, False, gb)


def multistyle(xs, w, kind):
    names = norm_names("multistyle", 6, True)

    def gb(k):
        p = names[k]
        return [(w @ W[f"{p}.norm.gamma_table"], w @ W[f"{p}.norm.beta_table"])] * len(xs)
    names = [n[:-len(".norm")] for n in names]
    return skeleton(xs, kind, "multistyle", 6, True, gb)


def onehot(*pairs):
    w = torch.zeros(26)
    for i, v in pairs:
        w[i] = v
    return w


def check_against_shared():
    if not SHARED.exists():
        print("../shared/fixtures/magenta not found: skipping the cross-check")
        return
    from PIL import Image

    def img(name):
        a = np.asarray(Image.open(SHARED / "images" / name).convert("RGB"), dtype=np.float64) / 255.0
        return torch.from_numpy(a).permute(2, 0, 1)[None].contiguous()

    def npy(name):
        return torch.from_numpy(np.load(SHARED / "expected" / f"{name}.npy")).double()

    v = predictor(img("style256.png"))[0]
    worst = {"style_vector": (v - npy("style_vector").flatten()).abs().max().item()}
    c1, c2, odd = img("content1.png"), img("content2.png"), img("content_odd.png")
    for case, kind in (("arbitrary", "in"), ("arbitrary_ln", "ln"), ("arbitrary_gn4", "gn:4")):
        worst[case] = (transformer([c1], [v], kind)[0] - npy(case)).abs().max().item()
    y1, y2 = transformer([c1, c2], [v, v], "bn")
    worst["arbitrary_bn_batch"] = max((y1 - npy("arbitrary_bn_batch_c1")).abs().max().item(),
                                      (y2 - npy("arbitrary_bn_batch_c2")).abs().max().item())
    yo = transformer([odd], [v], "in")[0]
    worst["arbitrary_odd"] = (yo - npy("arbitrary_odd_raw")[:, :, :75, :101]).abs().max().item()
    for case, w, kind in (("preset3", onehot((3, 1.0)), "in"), ("preset3_ln", onehot((3, 1.0)), "ln"),
                          ("preset_blend_3_12", onehot((3, 0.5), (12, 0.5)), "in")):
        worst[case] = (multistyle([c1], w, kind)[0] - npy(case)).abs().max().item()
    for k, d in worst.items():
        print(f"  reference vs shared {k}: {d:.2e}")
        assert d < 1e-4, k


def rand_image(gen, h, w):
    # Smooth structure plus noise, in [0, 1], float32-representable.
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([xx, yy, (xx + yy) / 2])[None]
    noise = torch.rand(1, 3, h, w, generator=gen, dtype=torch.float32).double()
    return (0.6 * base + 0.4 * noise).float().double()


check_against_shared()
gen = torch.Generator().manual_seed(7)
style = rand_image(gen, 64, 64)
c1, c2 = rand_image(gen, 28, 36), rand_image(gen, 33, 21)
v = predictor(style)[0]
v2 = predictor(c1)[0]
t = {"style": style, "content1": c1, "content2": c2, "style_vector": v[None], "content1_vector": v2[None]}
for kind in ("in", "ln", "gn:4"):
    t[f"arbitrary_{kind}"] = transformer([c1], [v], kind)[0]
t["arbitrary_bn_c1"], t["arbitrary_bn_c2"] = transformer([c1, c2], [v, v], "bn")
t["arbitrary_alpha05"] = transformer([c1], [0.5 * v + 0.5 * v2], "in")[0]
t["preset3"] = multistyle([c1], onehot((3, 1.0)), "in")[0]
t["preset_blend_3_12_ln"] = multistyle([c1], onehot((3, 0.25), (12, 0.75)), "ln")[0]
t = {k: x.float().contiguous() for k, x in t.items()}
save_file(t, str(OUT), metadata={"fixture": json.dumps({"torch": torch.__version__.split("+")[0]})})
print(f"wrote {len(t)} tensors to {OUT}")
