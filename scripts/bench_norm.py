#!/usr/bin/env python3
"""PyTorch side of benches/norm.rs: forward time of each normalization layer on
(8, 256, 64, 64) float32, with the same thread count. Prints `name median_ms` lines.

    python3 scripts/bench_norm.py --threads 2
"""
import argparse
import statistics
import time

import torch

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--samples", type=int, default=30)
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)
N, C, H, W = 8, 256, 64, 64
x = torch.randn(N, C, H, W)
s = torch.randn(N, C, H, W) * 2 + 0.5


def calc_mean_std(feat, eps=1e-5):  # pytorch-AdaIN function.py
    n, c = feat.shape[:2]
    var = feat.view(n, c, -1).var(dim=2) + eps
    return feat.view(n, c, -1).mean(dim=2).view(n, c, 1, 1), var.sqrt().view(n, c, 1, 1)


def adain(content, style):  # pytorch-AdaIN function.py
    size = content.size()
    sm, ss = calc_mean_std(style)
    cm, cs = calc_mean_std(content)
    return (content - cm.expand(size)) / cs.expand(size) * ss.expand(size) + sm.expand(size)


bn_train = torch.nn.BatchNorm2d(C).train()
bn_eval = torch.nn.BatchNorm2d(C).eval()
layers = {
    "batch_norm_train": lambda: bn_train(x),
    "batch_norm_eval": lambda: bn_eval(x),
    "instance_norm": (lambda m: lambda: m(x))(torch.nn.InstanceNorm2d(C, affine=True)),
    "layer_norm": (lambda m: lambda: m(x))(torch.nn.LayerNorm((C, H, W))),
    "group_norm": (lambda m: lambda: m(x))(torch.nn.GroupNorm(32, C)),
    "adain_in": lambda: adain(x, s),
}
with torch.no_grad():
    for name, f in layers.items():
        for _ in range(3):
            f()
        times = []
        for _ in range(args.samples):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        print(f"{name} {statistics.median(times) * 1e3:.3f}")
