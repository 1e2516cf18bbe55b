#!/usr/bin/env python3
"""AdaIN stylization (encode content + style, AdaIN, decode) in normstyle against the PyTorch
reference (pytorch-AdaIN's net.py architecture, random weights, eager CPU) on the same machine
with the same thread count.

Rounds alternate the two (A/B). normstyle: one process per round (`normstyle bench adain`, one
warm-up then one timed run; RAYON_NUM_THREADS). PyTorch: one process for all rounds
(torch.set_num_threads, no_grad, one warm-up). Prints the median of each, the ratio
normstyle / PyTorch and the achieved GFLOP/s (2·MACs / time), and the peak RSS of one
normstyle run.

    pip install torch
    cargo build --release
    python3 scripts/bench_vs_reference.py --sizes 256,512,1024 --threads 1,2 --rounds 5
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
ap = argparse.ArgumentParser()
ap.add_argument("--sizes", default="256,512")
ap.add_argument("--threads", default="1,2")
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--exe", default=str(ROOT / "target" / "release" / "normstyle"))
ap.add_argument("--torch-worker", type=str, default=None, help=argparse.SUPPRESS)
args = ap.parse_args()

VGG = [(3, 3, 1), (3, 64, 3), (64, 64, 3), "M", (64, 128, 3), (128, 128, 3), "M", (128, 256, 3),
       (256, 256, 3), (256, 256, 3), (256, 256, 3), "M", (256, 512, 3)]
DEC = [(512, 256), "U", (256, 256), (256, 256), (256, 256), (256, 128), "U", (128, 128),
       (128, 64), "U", (64, 64), (64, 3)]


def macs(size):
    """Multiply-accumulates of one stylization: encoder on content and style, decoder once."""
    total, s = 0, size
    for layer in VGG:
        if layer == "M":
            s = (s + 1) // 2
        else:
            cin, cout, k = layer
            total += 2 * cin * cout * k * k * s * s  # content and style
    for layer in DEC:
        if layer == "U":
            s *= 2
        else:
            cin, cout = layer
            total += cin * cout * 9 * s * s
    return total


def torch_worker(size, threads, rounds):
    """Runs in a child process: times the reference `rounds` times, reading a line per round."""
    import torch
    import torch.nn as nn
    torch.set_num_threads(threads)
    layers = []
    for layer in VGG:
        if layer == "M":
            layers.append(nn.MaxPool2d(2, 2, 0, ceil_mode=True))
        else:
            cin, cout, k = layer
            if k == 3:
                layers.append(nn.ReflectionPad2d(1))
            layers += [nn.Conv2d(cin, cout, k)] + ([nn.ReLU()] if k == 3 else [])
    vgg = nn.Sequential(*layers).eval()
    layers = []
    for i, layer in enumerate(DEC):
        if layer == "U":
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        else:
            cin, cout = layer
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3)] + ([nn.ReLU()] if i < len(DEC) - 1 else [])
    dec = nn.Sequential(*layers).eval()

    def adain(c, s, eps=1e-5):
        n, ch = c.shape[:2]
        cm, cs = c.view(n, ch, -1).mean(2).view(n, ch, 1, 1), (c.view(n, ch, -1).var(2) + eps).sqrt().view(n, ch, 1, 1)
        sm, ss = s.view(n, ch, -1).mean(2).view(n, ch, 1, 1), (s.view(n, ch, -1).var(2) + eps).sqrt().view(n, ch, 1, 1)
        return (c - cm) / cs * ss + sm

    content = torch.rand(1, 3, size, size)
    style = torch.rand(1, 3, size, size)

    def once():
        t0 = time.perf_counter()
        with torch.no_grad():
            dec(adain(vgg(content), vgg(style)))
        return time.perf_counter() - t0

    once()
    print(json.dumps({"ready": True}), flush=True)
    for _ in sys.stdin:
        print(json.dumps({"seconds": once()}), flush=True)


if args.torch_worker:
    size, threads, rounds = map(int, args.torch_worker.split(","))
    torch_worker(size, threads, rounds)
    sys.exit(0)


def normstyle_once(size, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run([args.exe, "bench", "adain", "--size", str(size), "--warmup", "1", "--runs", "1"],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def peak_rss_mib(size, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    r = subprocess.run(["/usr/bin/time", "-v", args.exe, "bench", "adain", "--size", str(size), "--warmup", "0",
                        "--runs", "1"], env=env, capture_output=True, text=True)
    for line in r.stderr.splitlines():
        if "Maximum resident set size" in line:
            return int(line.split()[-1]) / 1024
    return float("nan")


cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
ext = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16") if f in flags]
kern = json.loads(subprocess.run([args.exe, "bench", "adain", "--size", "32", "--warmup", "0", "--runs", "1"],
                                 capture_output=True, text=True, check=True).stdout.splitlines()[-1])["kernels"]
import importlib.metadata
print(f"CPU: {cpu}; vector extensions: {' '.join(ext)}; PyTorch {importlib.metadata.version('torch')}", flush=True)
print(f"normstyle kernels: {kern}", flush=True)
print("| size | threads | normstyle (s) | PyTorch (s) | ratio | normstyle GFLOP/s | PyTorch GFLOP/s | normstyle peak RSS |")
print("|---|---|---|---|---|---|---|---|")
for size in map(int, args.sizes.split(",")):
    for threads in map(int, args.threads.split(",")):
        worker = subprocess.Popen([sys.executable, __file__, "--torch-worker", f"{size},{threads},{args.rounds}"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
        # Wait until the reference has imported torch and warmed up: otherwise its start-up
        # runs beside the first normstyle round and slows it.
        worker.stdout.readline()
        a, b = [], []
        for _ in range(args.rounds):
            a.append(normstyle_once(size, threads))
            worker.stdin.write("go\n")
            worker.stdin.flush()
            b.append(json.loads(worker.stdout.readline())["seconds"])
            print(f"  {size}² {threads} thr: normstyle {a[-1]:.3f} s, PyTorch {b[-1]:.3f} s", file=sys.stderr, flush=True)
        worker.stdin.close()
        worker.wait()
        ma, mb = statistics.median(a), statistics.median(b)
        g = 2 * macs(size) / 1e9
        rss = peak_rss_mib(size, threads)
        print(f"| {size}² | {threads} | {ma:.3f} | {mb:.3f} | {ma / mb:.2f}× | {g / ma:.0f} | {g / mb:.0f} | {rss:.0f} MiB |",
              flush=True)
