#!/usr/bin/env python3
"""Writes tests/fixtures/norm_parity.safetensors: PyTorch reference outputs for normstyle's
normalization layers (src/norm/).

Every case stores its inputs, parameters and outputs as tensors named `<case>.<what>`; the file's
metadata `cases` is a JSON list describing each case (layer, mode, configuration), which
tests/norm_parity.rs walks. Running this script again rewrites an identical file (fixed seeds,
CPU float32, safetensors' sorted layout).

    pip install torch safetensors
    python3 scripts/gen_norm_fixtures.py
"""
import json
import pathlib

import torch
from safetensors.torch import save_file

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)
# The references are PyTorch's layers evaluated in float64 on float32-representable inputs and
# parameters, then stored as float32: PyTorch's own float32 kernels fold (x − μ)·γ/σ + β into
# x·a + b and are off by up to ~3e-5 when σ² ≪ ε (e.g. GroupNorm with one value per group),
# which would measure PyTorch's rounding rather than the semantics.
torch.set_default_dtype(torch.float64)
OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "norm_parity.safetensors"

# (N, C, H, W): C not a multiple of 8, N = 1, H = W = 1, a larger odd-sized one.
SHAPES = [(2, 6, 5, 7), (1, 12, 4, 4), (4, 8, 1, 1), (3, 20, 9, 11)]
GROUPS = {6: [3, 1, 6], 12: [4], 8: [2, 8], 20: [5, 4, 20]}

gen = torch.Generator().manual_seed(20261128)
tensors = {}
cases = []


def f32(t):
    """Rounds to float32 values (kept in float64 for the computation)."""
    return t.float().double()


def randn(*shape, scale=1.0, offset=0.0):
    return f32(torch.randn(*shape, generator=gen, dtype=torch.float32) * scale + offset)


def rand(*shape):
    return f32(torch.rand(*shape, generator=gen, dtype=torch.float32))


def rand_input(shape):
    # A per-channel offset and scale, so statistics differ between channels.
    n, c = shape[0], shape[1]
    x = randn(*shape)
    x = x * (rand(1, c, *([1] * (len(shape) - 2))) * 3 + 0.5)
    return f32(x + randn(1, c, *([1] * (len(shape) - 2)), scale=2.0))


def add(name, meta, **ts):
    meta = dict(meta, name=name)
    cases.append(meta)
    for k, v in ts.items():
        tensors[f"{name}.{k}"] = v.detach().float().contiguous().clone()


def input_variants(shape, idx):
    """The plain input and, for the first shape, a permuted (non-contiguous) view."""
    x = rand_input(shape)
    yield f"s{idx}", x, None
    if idx == 0:
        nhwc = rand_input(shape).permute(0, 2, 3, 1).contiguous()
        yield f"s{idx}perm", nhwc.permute(0, 3, 1, 2), nhwc


def set_affine(m, c_shape):
    with torch.no_grad():
        m.weight.copy_(randn(*c_shape))
        m.bias.copy_(randn(*c_shape))


for idx, shape in enumerate(SHAPES):
    n, c, h, w = shape
    for tag, x, nhwc in input_variants(shape, idx):
        stored = {"x": x} if nhwc is None else {"x_nhwc": nhwc}
        base = {"shape": list(shape), "permuted": nhwc is not None}
        for affine in (False, True):
            a = "aff" if affine else "noaff"
            # BatchNorm2d: train (updates running stats) and eval (random running stats).
            bn = torch.nn.BatchNorm2d(c, affine=affine)
            if affine:
                set_affine(bn, (c,))
            params = {"weight": bn.weight, "bias": bn.bias} if affine else {}
            bn.train()
            y = bn(x)
            add(f"bn_train_{a}_{tag}", dict(base, layer="bn", mode="train", affine=affine, momentum=0.1),
                **stored, **params, y=y, running_mean=bn.running_mean, running_var=bn.running_var)
            with torch.no_grad():
                bn.running_mean.copy_(randn(c))
                bn.running_var.copy_(rand(c) + 0.5)
            bn.eval()
            add(f"bn_eval_{a}_{tag}", dict(base, layer="bn", mode="eval", affine=affine),
                **stored, **params, y=bn(x), running_mean=bn.running_mean, running_var=bn.running_var)

            # InstanceNorm2d: needs more than one spatial element.
            if h * w > 1:
                inn = torch.nn.InstanceNorm2d(c, affine=affine)
                if affine:
                    set_affine(inn, (c,))
                iparams = {"weight": inn.weight, "bias": inn.bias} if affine else {}
                for mode in ("train", "eval"):
                    inn.train(mode == "train")
                    add(f"in_{mode}_{a}_{tag}", dict(base, layer="in", mode=mode, affine=affine, track=False),
                        **stored, **iparams, y=inn(x))
                tr = torch.nn.InstanceNorm2d(c, affine=affine, track_running_stats=True)
                if affine:
                    set_affine(tr, (c,))
                tparams = {"weight": tr.weight, "bias": tr.bias} if affine else {}
                tr.train()
                y = tr(x)
                add(f"in_track_train_{a}_{tag}", dict(base, layer="in", mode="train", affine=affine, track=True),
                    **stored, **tparams, y=y, running_mean=tr.running_mean, running_var=tr.running_var)
                tr.eval()
                add(f"in_track_eval_{a}_{tag}", dict(base, layer="in", mode="eval", affine=affine, track=True),
                    **stored, **tparams, y=tr(x), running_mean=tr.running_mean, running_var=tr.running_var)

            # LayerNorm over (C, H, W), and over (H, W) for the first shape.
            for ns in [(c, h, w)] + ([(h, w)] if idx == 0 else []):
                ln = torch.nn.LayerNorm(ns, elementwise_affine=affine)
                if affine:
                    set_affine(ln, ns)
                lparams = {"weight": ln.weight, "bias": ln.bias} if affine else {}
                for mode in ("train", "eval"):
                    ln.train(mode == "train")
                    add(f"ln{len(ns)}_{mode}_{a}_{tag}",
                        dict(base, layer="ln", mode=mode, affine=affine, normalized_shape=list(ns)),
                        **stored, **lparams, y=ln(x))

            # GroupNorm.
            for g in GROUPS[c]:
                gn = torch.nn.GroupNorm(g, c, affine=affine)
                if affine:
                    set_affine(gn, (c,))
                gparams = {"weight": gn.weight, "bias": gn.bias} if affine else {}
                for mode in ("train", "eval"):
                    gn.train(mode == "train")
                    add(f"gn{g}_{mode}_{a}_{tag}", dict(base, layer="gn", mode=mode, affine=affine, groups=g),
                        **stored, **gparams, y=gn(x))

# BatchNorm2d's running statistics over three successive batches: momentum 0.1 and None
# (cumulative average), without affine and with.
for momentum in (0.1, None):
    for affine in (False, True):
        bn = torch.nn.BatchNorm2d(6, momentum=momentum, affine=affine)
        if affine:
            set_affine(bn, (6,))
        name = f"bn_seq_m{'none' if momentum is None else '01'}_{'aff' if affine else 'noaff'}"
        ts = {"weight": bn.weight, "bias": bn.bias} if affine else {}
        bn.train()
        for step in range(3):
            x = rand_input((2 + step, 6, 4 + step, 5))
            ts.update({f"x{step}": x, f"y{step}": bn(x), f"running_mean{step}": bn.running_mean.clone(),
                       f"running_var{step}": bn.running_var.clone()})
        bn.eval()
        ts["x_eval"] = rand_input((2, 6, 3, 3))
        ts["y_eval"] = bn(ts["x_eval"])
        add(name, {"layer": "bn_seq", "affine": affine, "momentum": momentum,
                   "num_batches_tracked": int(bn.num_batches_tracked)}, **ts)

# Statistics alignment, as pytorch-AdaIN's calc_mean_std (unbiased variance + eps, sqrt), pooled
# per docs/ARCHITECTURE.md §3.
EPS = 1e-5


def stats(feats, kind, groups=None):
    """Mean and std per (sample, channel) for a list of (1, C, H, W) maps, pooled by kind."""
    c = feats[0].shape[1]
    if kind == "bn":
        flat = torch.cat([f.reshape(c, -1) for f in feats], dim=1)  # every pixel of every image
        m, v = flat.mean(1), flat.var(1) + EPS
        return [(m.view(1, c, 1, 1), v.sqrt().view(1, c, 1, 1)) for _ in feats]
    out = []
    for f in feats:
        g = {"in": c, "ln": 1, "gn": groups}[kind]
        r = f.reshape(g, -1)
        m = r.mean(1).repeat_interleave(c // g)
        s = (r.var(1) + EPS).sqrt().repeat_interleave(c // g)
        out.append((m.view(1, c, 1, 1), s.view(1, c, 1, 1)))
    return out


def align(contents, style, kind, groups=None):
    s_kind = "in" if kind == "bn" else kind
    (sm, ss), = stats([style], s_kind, groups)
    return [(f - m) / s * ss + sm for f, (m, s) in zip(contents, stats(contents, kind, groups))]


for c, g in ((12, 4), (7, 7), (10, 32)):
    contents = [rand_input((1, c, 6, 5)), rand_input((1, c, 4, 9))]
    style = rand_input((1, c, 7, 8))
    for kind in ("in", "bn", "ln", "gn"):
        gg = None
        if kind == "gn":
            import math
            gg = math.gcd(g, c)
        ys = align(contents, style, kind, gg)
        add(f"ada_{kind}_c{c}", {"layer": "ada", "kind": kind if kind != "gn" else f"gn:{g}", "channels": c},
            content0=contents[0], content1=contents[1], style=style, y0=ys[0], y1=ys[1])

OUT.parent.mkdir(parents=True, exist_ok=True)
# One metadata key: safetensors writes the metadata map in hash order, so two keys would make the
# file differ between runs.
meta = {"torch": torch.__version__.split("+")[0], "cases": cases}
save_file(tensors, str(OUT), metadata={"fixture": json.dumps(meta, sort_keys=True)})
print(f"wrote {len(cases)} cases, {len(tensors)} tensors to {OUT}")
