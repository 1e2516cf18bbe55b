#!/usr/bin/env python3
"""Video throughput: `normstyle stylize clip.mp4` (ffmpeg pipes, decode/compute/encode on their
own threads) against `normstyle stylize --content-dir` on the same frames extracted as PNGs
(extraction not timed), same settings, same thread count, rounds alternating A/B. Prints frames
per second (medians) and the ratio of the times.

The clip is a pan over the bundled chicago.jpg scaled up, made with ffmpeg (H.264, 24 fps).
AdaIN needs weights: `--vgg`/`--decoder` (the random-weight fixtures of the released shapes in
../shared/fixtures/adain time the same as the real ones).

    cargo build --release
    python3 scripts/bench_video.py --model magenta --size 1280x720 --frames 48
    python3 scripts/bench_video.py --model adain --size 1280x720 --frames 12 --content-size 512
"""
import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("--model", choices=["magenta", "adain"], default="magenta")
ap.add_argument("--size", default="1280x720")
ap.add_argument("--frames", type=int, default=48)
ap.add_argument("--content-size", type=int, default=0)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--temporal", default="0")
ap.add_argument("--exe", default=str(ROOT / "target" / "release" / "normstyle"))
fx = ROOT.parent / "shared" / "fixtures" / "adain"
ap.add_argument("--vgg", default=str(fx / "vgg_normalised.pth"))
ap.add_argument("--decoder", default=str(fx / "decoder.pth"))
args = ap.parse_args()


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    fam = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("cpu family")), "?")
    mod = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model\t")), "?")
    flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
    isa = " ".join(f for f in ["avx2", "fma", "avx512f", "avx512vl"] if f in flags)
    ff = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    return f"{cpu} (family {fam} model {mod}; {isa}), {os.cpu_count()} cores; {ff}"


w, h = (int(x) for x in args.size.split("x"))
tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench_video."))
clip = tmp / "clip.mp4"
photo = ROOT / "assets" / "photos" / "chicago.jpg"
# Scaled so the 1280-wide window pans 8 px a frame across it.
scale_w = w + 8 * args.frames + 16
subprocess.run(
    ["ffmpeg", "-v", "error", "-y", "-loop", "1", "-framerate", "24", "-i", str(photo), "-vf",
     f"scale={scale_w}:-2,crop={w}:{h}:'min(n*8,iw-{w})':'(ih-{h})/2'", "-frames:v", str(args.frames),
     "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", str(clip)],
    check=True)
frames = tmp / "frames"
frames.mkdir()
subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), str(frames / "f%04d.png")], check=True)
style = ROOT / "assets" / "styles" / "brushstrokes.jpg"
common = ["--style", str(style), "--content-size", str(args.content_size), "-q", "--force",
          "--model", args.model]
if args.model == "adain":
    common += ["--vgg", args.vgg, "--decoder", args.decoder, "--style-size", "512"]
env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))


def video():
    out = tmp / "out.mp4"
    t = time.perf_counter()
    subprocess.run([args.exe, "stylize", str(clip), "-o", str(out), "--temporal", args.temporal] + common,
                   check=True, env=env)
    return time.perf_counter() - t


def batch():
    out = tmp / "out_pngs"
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    subprocess.run([args.exe, "stylize", "--content-dir", str(frames), "-o", str(out)] + common,
                   check=True, env=env)
    return time.perf_counter() - t


tv, tb = [], []
for r in range(args.rounds):
    tv.append(video())
    tb.append(batch())
mv, mb = statistics.median(tv), statistics.median(tb)
n = args.frames
print(f"machine: {machine()}")
print(f"{args.model} {w}x{h} --content-size {args.content_size}, {n} frames, {args.threads} threads, "
      f"{args.rounds} rounds (median)")
print(f"  video (stylize clip.mp4 -o out.mp4): {mv:.2f} s = {n / mv:.2f} frames/s   runs {[round(x, 2) for x in tv]}")
print(f"  --content-dir on the PNG frames:      {mb:.2f} s = {n / mb:.2f} frames/s   runs {[round(x, 2) for x in tb]}")
print(f"  video / content-dir time: {mv / mb:.2f}x")
shutil.rmtree(tmp, ignore_errors=True)
