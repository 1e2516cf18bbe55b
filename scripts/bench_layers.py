#!/usr/bin/env python3
"""Per-layer GFLOP/s of AdaIN's 3×3 convolutions (`normstyle bench adain-layers`), two or more
normstyle builds side by side (e.g. before and after a kernel change), rounds alternating.

GFLOP/s are counted as for direct convolution (2·Cin·Cout·9·H·W per layer), so Winograd layers
can exceed the FMA peak. Prints the CPU, its vector extensions and each build's kernel path,
then one Markdown table: the median over rounds of each build's median time per layer.

    python3 scripts/bench_layers.py --exe before=/tmp/ns_before --exe after=target/release/normstyle \
        --size 512 --threads 2 --rounds 3

`label=path@isa` runs that build with `NORMSTYLE_KERNEL=isa` (e.g. the AVX2 micro-kernel of the
same build on an AVX-512 machine).
"""
import argparse
import json
import os
import statistics
import subprocess

ap = argparse.ArgumentParser()
ap.add_argument("--exe", action="append", required=True, help="label=path[@isa], in table order")
ap.add_argument("--size", type=int, default=512)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--runs", type=int, default=5)
args = ap.parse_args()
exes = [e.split("=", 1) for e in args.exe]
kernel = {label: exe.split("@", 1)[1] for label, exe in exes if "@" in exe}
exes = [(label, exe.split("@", 1)[0]) for label, exe in exes]

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
ext = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl") if f in flags]
print(f"CPU: {cpu}; vector extensions: {' '.join(ext)}; {args.threads} thread(s), {args.size}²")

times = {label: {} for label, _ in exes}
meta = {}
for _ in range(args.rounds):
    for label, exe in exes:
        env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
        if label in kernel:
            env["NORMSTYLE_KERNEL"] = kernel[label]
        out = subprocess.run([exe, "bench", "adain-layers", "--size", str(args.size), "--warmup", "1",
                              "--runs", str(args.runs)], env=env, check=True, capture_output=True,
                             text=True).stdout
        for line in out.strip().splitlines():
            d = json.loads(line)
            times[label].setdefault(d["layer"], []).append(d["seconds"])
            meta[d["layer"]] = (d["per_stylization"], d["gflops"] * d["seconds"])
            meta[label] = d["kernels"]
for label, _ in exes:
    print(f"- {label}: {meta[label]}")

head = "| layer | × per stylization | " + " | ".join(f"{l} ms | {l} GFLOP/s" for l, _ in exes) + " |"
print(head)
print("|" + "---|" * (2 + 2 * len(exes)))
totals = {label: 0.0 for label, _ in exes}
for layer, (count, gflop) in ((k, v) for k, v in meta.items() if isinstance(v, tuple)):
    cells = []
    for label, _ in exes:
        t = statistics.median(times[label][layer])
        totals[label] += t * count
        cells.append(f"{t * 1e3:.1f} | {gflop / t:.0f}")
    print(f"| {layer} | {count} | " + " | ".join(cells) + " |")
print("| all convolutions of one stylization (s) | | " + " | ".join(f"{totals[l]:.3f} | " for l, _ in exes) + "|")
