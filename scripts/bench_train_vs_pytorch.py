#!/usr/bin/env python3
"""One training step of `normstyle train` against PyTorch on the same networks and loss, in one
run, on the same machine: the transform network (small: 8/16/32 channels; johnson:
fast_neural_style's TransformerNet, 32/64/128; InstanceNorm2d(affine)) forward on a batch of
crops, the loss network (AdaIN's vgg_normalised to relu4_1, random weights of the released
shapes) on the output and on the content, Gram style losses at relu1_1 … relu4_1 and a content
loss at relu4_1, backward, then an Adam update.

For each (arch, size) and each thread count, the two sides alternate (normstyle, PyTorch,
PyTorch, normstyle, …: ABBA) so that drift on a noisy machine hits both; each side reports
the median step time of its runs after a warm-up step. Also times normstyle with the
`predictor` loss network (PyTorch has no MobileNet-predictor counterpart here). Prints a
Markdown table with the CPU's name and writes it to --out.

    pip install torch
    cargo build --release
    python3 scripts/bench_train_vs_pytorch.py --runs 5 --out /tmp/bench_train.md
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "normstyle"

VGG = [  # (in, out) of vgg_normalised's convolutions up to relu4_1; "M": max pool (ceil)
    (3, 3, 1), (3, 64, 3), (64, 64, 3), "M", (64, 128, 3), (128, 128, 3), "M",
    (128, 256, 3), (256, 256, 3), (256, 256, 3), (256, 256, 3), "M", (256, 512, 3),
]
TAPS = {1, 4, 7, 12}  # indices (in the list above, counting "M") of relu1_1 … relu4_1


def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def torch_step_times(arch, size, batch, runs, threads):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    w0, w1, w2 = (8, 16, 32) if arch == "small" else (32, 64, 128)

    class Conv(nn.Module):
        def __init__(self, i, o, k, s=1, up=False):
            super().__init__()
            self.pad, self.up = nn.ReflectionPad2d(k // 2), up
            self.conv2d = nn.Conv2d(i, o, k, s)

        def forward(self, x):
            if self.up:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            return self.conv2d(self.pad(x))

    class Res(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1, self.in1 = Conv(c, c, 3), nn.InstanceNorm2d(c, affine=True)
            self.conv2, self.in2 = Conv(c, c, 3), nn.InstanceNorm2d(c, affine=True)

        def forward(self, x):
            return self.in2(self.conv2(F.relu(self.in1(self.conv1(x))))) + x

    net = nn.Sequential(
        Conv(3, w0, 9), nn.InstanceNorm2d(w0, affine=True), nn.ReLU(),
        Conv(w0, w1, 3, 2), nn.InstanceNorm2d(w1, affine=True), nn.ReLU(),
        Conv(w1, w2, 3, 2), nn.InstanceNorm2d(w2, affine=True), nn.ReLU(),
        *[Res(w2) for _ in range(5)],
        Conv(w2, w1, 3, up=True), nn.InstanceNorm2d(w1, affine=True), nn.ReLU(),
        Conv(w1, w0, 3, up=True), nn.InstanceNorm2d(w0, affine=True), nn.ReLU(),
        Conv(w0, 3, 9),
    )
    layers = []
    for spec in VGG:
        if spec == "M":
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        else:
            i, o, k = spec
            if k == 1:  # the input 1×1 convolution: no padding, no ReLU
                layers.append(nn.Conv2d(i, o, k))
            else:
                layers.append(nn.Sequential(nn.ReflectionPad2d(k // 2), nn.Conv2d(i, o, k), nn.ReLU()))
    vgg = nn.ModuleList(layers)
    for p in vgg.parameters():
        p.requires_grad_(False)

    def feats(x):
        out = []
        for i, layer in enumerate(vgg):
            x = layer(x)
            if i in TAPS:
                out.append(x)
        return out

    def gram(f):
        n, c, h, w = f.shape
        f = f.reshape(n, c, h * w)
        return f @ f.transpose(1, 2) / (c * h * w)

    style = torch.rand(1, 3, size, size + size // 4)
    with torch.no_grad():
        targets = [gram(f) for f in feats(style)]
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, size, size)

    def step():
        opt.zero_grad()
        with torch.no_grad():
            content = feats(x)[-1]
        y = net(x * 255.0) / 255.0
        f = feats(y)
        lc = F.mse_loss(f[-1], content)
        ls = sum(F.mse_loss(gram(a), t.expand_as(gram(a))) for a, t in zip(f, targets))
        (lc + ls).backward()
        opt.step()

    step()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def normstyle_step_times(arch, size, batch, runs, threads, loss_net="vgg"):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(
        [str(BIN), "bench", "train", "--arch", arch, "--size", str(size), "--batch-size",
         str(batch), "--loss-net", loss_net, "--warmup", "1", "--runs", str(runs)],
        env=env, check=True, capture_output=True, text=True,
    ).stdout
    return [json.loads(line)["seconds"] for line in out.splitlines() if line.startswith("{")]


def run_torch_isolated(arch, size, batch, runs, threads):
    # Each PyTorch measurement in its own process, like normstyle's, so neither inherits the
    # other's thread pools or allocator state.
    code = (
        "import json,sys; sys.path.insert(0, %r); import bench_train_vs_pytorch as b; "
        "print(json.dumps(b.torch_step_times(%r, %d, %d, %d, %d)))"
        % (str(ROOT / "scripts"), arch, size, batch, runs, threads)
    )
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2, help="ABBA rounds per configuration")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--archs", default="small,johnson")
    ap.add_argument("--sizes", default="128,256")
    ap.add_argument("--threads", default="2,1")
    ap.add_argument("--out", type=pathlib.Path)
    args = ap.parse_args()
    if not BIN.exists():
        sys.exit(f"{BIN}: build it first (cargo build --release)")
    rows = []
    for threads in map(int, args.threads.split(",")):
        for arch in args.archs.split(","):
            for size in map(int, args.sizes.split(",")):
                ours, theirs = [], []
                for r in range(args.rounds):
                    order = ("n", "t") if r % 2 == 0 else ("t", "n")
                    for side in order:
                        if side == "n":
                            ours += normstyle_step_times(arch, size, args.batch, args.runs, threads)
                        else:
                            theirs += run_torch_isolated(arch, size, args.batch, args.runs, threads)
                pred = normstyle_step_times(arch, size, args.batch, args.runs, threads, "predictor")
                a, b = statistics.median(ours), statistics.median(theirs)
                rows.append((threads, arch, size, a, b, a / b, statistics.median(pred)))
                print(f"{threads} thr {arch} {size}²: normstyle {a:.3f} s, PyTorch {b:.3f} s, "
                      f"ratio {a / b:.2f}; predictor loss {statistics.median(pred):.3f} s",
                      file=sys.stderr)
    import torch
    lines = [
        f"CPU: {cpu_name()}; PyTorch {torch.__version__}; batch {args.batch}; medians of "
        f"{args.runs * args.rounds} steps per side (ABBA, {args.rounds} rounds).",
        "",
        "| threads | arch | size | normstyle (vgg) | PyTorch (vgg) | ratio | normstyle (predictor) |",
        "|---|---|---|---|---|---|---|",
    ]
    for t, arch, size, a, b, r, p in rows:
        lines.append(f"| {t} | {arch} | {size}² | {a:.3f} s | {b:.3f} s | {r:.2f}× | {p:.3f} s |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
