#!/usr/bin/env python3
"""Writes the fast_neural_style fixture of the test suite (tests/trained_parity.rs):

- tests/fixtures/fns/transformer_net_in.pth: a state_dict of PyTorch's
  examples/fast_neural_style TransformerNet (InstanceNorm2d(affine=True)) with random weights,
  saved in the legacy (non-zip) format the released candy/mosaic/rain_princess/udnie models use,
  with the stale `running_mean`/`running_var` keys those 2017 files carry (the example deletes
  them before loading; normstyle never reads them).
- tests/fixtures/fns/expected.safetensors: `input` (1, 3, 40, 48) in [0, 255] and `output`, the
  network's output in float64 (the Rust port runs in float32; the test states the tolerance).

The TransformerNet below is the example's transformer_net.py with its channel widths as a
parameter: the released models are 32/64/128 (6.7 MB); the fixture uses normstyle's `small`
widths, 8/16/32 (440 KB), which the loader tells apart by conv1's width — same key names, same
format, same code path. The weights are multiples of 2⁻¹² (uniform in PyTorch's default
±1/√fan_in bounds; γ in [0.5, 1.5]).

    pip install torch safetensors numpy
    python3 scripts/gen_fns_fixture.py
"""
import pathlib

import torch
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "fns"


class ConvLayer(torch.nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride):
        super().__init__()
        self.reflection_pad = torch.nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        return self.conv2d(self.reflection_pad(x))


WIDTHS = (8, 16, 32)  # the released models: (32, 64, 128)


class ResidualBlock(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in1 = torch.nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in2 = torch.nn.InstanceNorm2d(channels, affine=True)
        self.relu = torch.nn.ReLU()

    def forward(self, x):
        residual = x
        out = self.relu(self.in1(self.conv1(x)))
        out = self.in2(self.conv2(out))
        return out + residual


class UpsampleConvLayer(torch.nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride, upsample=None):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = torch.nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        if self.upsample:
            x = torch.nn.functional.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


class TransformerNet(torch.nn.Module):
    def __init__(self, widths=WIDTHS):
        super().__init__()
        a, b, c = widths
        self.conv1 = ConvLayer(3, a, kernel_size=9, stride=1)
        self.in1 = torch.nn.InstanceNorm2d(a, affine=True)
        self.conv2 = ConvLayer(a, b, kernel_size=3, stride=2)
        self.in2 = torch.nn.InstanceNorm2d(b, affine=True)
        self.conv3 = ConvLayer(b, c, kernel_size=3, stride=2)
        self.in3 = torch.nn.InstanceNorm2d(c, affine=True)
        self.res1 = ResidualBlock(c)
        self.res2 = ResidualBlock(c)
        self.res3 = ResidualBlock(c)
        self.res4 = ResidualBlock(c)
        self.res5 = ResidualBlock(c)
        self.deconv1 = UpsampleConvLayer(c, b, kernel_size=3, stride=1, upsample=2)
        self.in4 = torch.nn.InstanceNorm2d(b, affine=True)
        self.deconv2 = UpsampleConvLayer(b, a, kernel_size=3, stride=1, upsample=2)
        self.in5 = torch.nn.InstanceNorm2d(a, affine=True)
        self.deconv3 = ConvLayer(a, 3, kernel_size=9, stride=1)
        self.relu = torch.nn.ReLU()

    def forward(self, X):
        y = self.relu(self.in1(self.conv1(X)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        y = self.res1(y)
        y = self.res2(y)
        y = self.res3(y)
        y = self.res4(y)
        y = self.res5(y)
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


def quantized_uniform(gen, shape, lo, hi):
    q = 2.0**-12
    v = torch.rand(shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo
    return (torch.round(v / q) * q).to(torch.float32)


def main():
    gen = torch.Generator().manual_seed(2017)
    net = TransformerNet()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if ".in" in name or name.startswith("in"):
                lo, hi = (0.5, 1.5) if name.endswith("weight") else (-0.2, 0.2)
            else:
                conv = dict(net.named_modules())[name.rsplit(".", 1)[0]]
                fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
                lo, hi = -(fan_in**-0.5), fan_in**-0.5
            p.copy_(quantized_uniform(gen, p.shape, lo, hi))
    state = net.state_dict()
    # The 2017 files carry InstanceNorm running statistics (a PyTorch 0.3 artifact).
    for k in list(state):
        if k.endswith(".weight") and (k.startswith("in") or ".in" in k):
            c = state[k].shape[0]
            state[k.replace("weight", "running_mean")] = torch.zeros(c)
            state[k.replace("weight", "running_var")] = torch.ones(c)
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save(state, OUT / "transformer_net_in.pth", _use_new_zipfile_serialization=False)

    x = torch.round(torch.rand((1, 3, 40, 48), generator=gen, dtype=torch.float64) * 255.0)
    net64 = net.double().eval()
    with torch.no_grad():
        y = net64(x)
    save_file(
        {"input": x.float().contiguous(), "output": y.contiguous()},
        str(OUT / "expected.safetensors"),
    )
    print("wrote", OUT, "output range", float(y.min()), float(y.max()))


if __name__ == "__main__":
    main()
