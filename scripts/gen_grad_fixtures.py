#!/usr/bin/env python3
"""Writes tests/fixtures/norm_grad.safetensors: PyTorch's gradients through normstyle's
normalization layers in training mode (src/norm/), for tests/norm_grad.rs.

For each case: input x (N, C, H, W), parameters γ, β, an upstream gradient g; the loss is
sum(y · g), so `<case>.dx`, `<case>.dweight`, `<case>.dbias` are dL/dx, dL/dγ, dL/dβ, and
`<case>.y` the output. BatchNorm cases also store the running statistics after the step. As
in gen_norm_fixtures.py the references are PyTorch evaluated in float64 on float32 values,
stored as float32. Metadata `fixture` lists the cases. Rerunning rewrites an identical file.

    pip install torch safetensors
    python3 scripts/gen_grad_fixtures.py
"""
import json
import pathlib

import torch
from safetensors.torch import save_file

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)
OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "norm_grad.safetensors"

gen = torch.Generator().manual_seed(20261202)


def f32(t):
    return t.float().double()


def rand(*shape, scale=1.0, shift=0.0):
    return f32(torch.randn(*shape, generator=gen) * scale + shift)


# (name, layer factory, x shape): the layers `Norm` builds, plus LayerNorm over (C, H, W).
CASES = [
    ("bn", lambda c: torch.nn.BatchNorm2d(c), (4, 6, 5, 7)),
    ("bn_n2", lambda c: torch.nn.BatchNorm2d(c), (2, 8, 3, 3)),
    ("in", lambda c: torch.nn.InstanceNorm2d(c, affine=True), (3, 6, 5, 4)),
    ("ln_gn1", lambda c: torch.nn.GroupNorm(1, c), (3, 8, 4, 5)),
    ("gn4", lambda c: torch.nn.GroupNorm(4, c), (2, 8, 6, 5)),
    ("gn3", lambda c: torch.nn.GroupNorm(3, c), (2, 12, 3, 7)),
    ("layernorm_chw", None, (2, 5, 4, 3)),
]

tensors, cases = {}, []
for name, make, shape in CASES:
    n, c, h, w = shape
    if make is None:
        layer = torch.nn.LayerNorm([c, h, w])
        pshape = (c, h, w)
    else:
        layer = make(c)
        pshape = (c,)
    with torch.no_grad():
        layer.weight.copy_(rand(*pshape, scale=0.5, shift=1.0))
        layer.bias.copy_(rand(*pshape, scale=0.5))
    layer.train()
    x = rand(*shape, scale=2.0, shift=0.5).requires_grad_(True)
    g = rand(*shape)
    y = layer(x)
    (y * g).sum().backward()
    out = {
        "x": x.detach(), "g": g, "weight": layer.weight.detach(), "bias": layer.bias.detach(),
        "y": y.detach(), "dx": x.grad, "dweight": layer.weight.grad, "dbias": layer.bias.grad,
    }
    if isinstance(layer, torch.nn.BatchNorm2d):
        out["running_mean"] = layer.running_mean
        out["running_var"] = layer.running_var
    for k, v in out.items():
        tensors[f"{name}.{k}"] = v.float().contiguous()
    kind = "layernorm" if make is None else type(layer).__name__
    cases.append({"name": name, "layer": kind, "groups": getattr(layer, "num_groups", None)})

save_file(tensors, str(OUT), metadata={"fixture": json.dumps({"cases": cases, "torch": torch.__version__})})
print(f"{OUT}: {len(cases)} cases, {len(tensors)} tensors")
