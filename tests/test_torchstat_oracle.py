"""modelprof's rows against torchstat's own per-layer formula functions, on many random layer configurations.

torchstat profiles one sample; its MAdd is per sample, so the reference is scaled by the batch N. Where
docs/counting.md lists a torchstat bug, the reference is torchstat's value with that documented fix applied:
weights are read once per batch, not once per sample (MemRead N*(n + P) becomes N*n + P), and Upsample's Flops
keep the channel count torchstat drops.
"""

import random

import pytest
import torch
from torch import nn

import modelprof

torchstat = pytest.importorskip("torchstat")

SEEDS = range(25)


def run(layer, *inputs):
    """modelprof's single row for ``layer`` and the output tensor torchstat's functions need."""
    report = modelprof.profile(layer, *inputs)
    assert len(report.layers) == 1
    with torch.no_grad():
        out = layer.eval()(*inputs)
    return report.layers[0], out


def weights(layer):
    return sum(p.numel() for p in layer.parameters() if p.requires_grad)


def check(layer, x, madd=True, flops=True, memory=True):
    row, out = run(layer, x)
    n = x.shape[0]
    if madd:
        assert row.madd == n * int(torchstat.compute_madd(layer, x, out))
    if flops:
        assert row.flops == int(torchstat.compute_flops(layer, x, out))
    if memory:
        read, write = torchstat.compute_memory(layer, x, out)
        assert row.mem_read == (int(read) - (n - 1) * weights(layer)) * 4  # fix: weights read once per batch
        assert row.mem_write == int(write) * 4


@pytest.mark.parametrize("seed", SEEDS)
def test_conv2d(seed):
    r = random.Random(seed)
    groups = r.choice([1, 1, 2, 4])
    cin, cout = groups * r.randint(1, 4), groups * r.randint(1, 4)
    k, stride, pad = r.choice([1, 3, 5, (3, 1)]), r.randint(1, 3), r.randint(0, 2)
    layer = nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=r.random() < 0.5)
    check(layer, torch.randn(r.randint(1, 3), cin, r.randint(6, 20), r.randint(6, 20)))


@pytest.mark.parametrize("seed", SEEDS)
def test_conv_transpose2d(seed):
    r = random.Random(seed)
    groups = r.choice([1, 2])
    cin, cout = groups * r.randint(1, 4), groups * r.randint(1, 4)
    layer = nn.ConvTranspose2d(cin, cout, r.choice([2, 3, 4]), r.randint(1, 3), groups=groups,
                               bias=r.random() < 0.5)
    check(layer, torch.randn(r.randint(1, 3), cin, r.randint(3, 9), r.randint(3, 9)), flops=False, memory=False)


@pytest.mark.parametrize("seed", SEEDS)
def test_batchnorm2d(seed):
    r = random.Random(seed)
    c = r.randint(1, 8)
    layer = nn.BatchNorm2d(c, affine=r.random() < 0.7)
    x = torch.randn(r.randint(1, 3), c, r.randint(2, 12), r.randint(2, 12))
    row, out = run(layer, x)
    n = x.shape[0]
    assert row.madd == n * int(torchstat.compute_madd(layer, x, out))
    assert row.flops == int(torchstat.compute_flops(layer, x, out))
    read, write = torchstat.compute_memory(layer, x, out)
    assert row.mem_read == (int(read) - (n - 1) * 2 * c) * 4  # fix: the 2C per-channel values read once
    assert row.mem_write == int(write) * 4


@pytest.mark.parametrize("seed", SEEDS)
def test_pool2d(seed):
    r = random.Random(seed)
    kind = r.choice([nn.MaxPool2d, nn.AvgPool2d])
    k = r.choice([2, 3, (2, 3)])
    layer = kind(k, stride=r.randint(1, 3), padding=r.choice([0, 1]) if k != 2 else 0)
    check(layer, torch.randn(r.randint(1, 3), r.randint(1, 5), r.randint(6, 16), r.randint(6, 16)))


@pytest.mark.parametrize("seed", SEEDS)
def test_activations(seed):
    r = random.Random(seed)
    layer = r.choice([nn.ReLU(), nn.ReLU6(), nn.ELU(), nn.LeakyReLU(0.1), nn.PReLU(), nn.PReLU(3)])
    x = torch.randn(r.randint(1, 3), 3, r.randint(1, 9), r.randint(1, 9))
    has_madd = isinstance(layer, nn.ReLU | nn.ReLU6)  # torchstat has no MAdd for the others
    check(layer, x, madd=has_madd)


@pytest.mark.parametrize("seed", SEEDS)
def test_linear(seed):
    r = random.Random(seed)
    layer = nn.Linear(r.randint(1, 64), r.randint(1, 64), bias=r.random() < 0.5)
    check(layer, torch.randn(r.randint(1, 4), layer.in_features))


@pytest.mark.parametrize("seed", SEEDS)
def test_softmax_2d(seed):
    r = random.Random(seed)
    layer = nn.Softmax(dim=1)
    check(layer, torch.randn(r.randint(1, 4), r.randint(1, 50)), flops=False, memory=False)


@pytest.mark.parametrize("seed", SEEDS)
def test_bilinear(seed):
    r = random.Random(seed)
    layer = nn.Bilinear(r.randint(1, 8), r.randint(1, 8), r.randint(1, 8))
    n = r.randint(1, 3)
    x1, x2 = torch.randn(n, layer.in1_features), torch.randn(n, layer.in2_features)
    row = modelprof.profile(layer, x1, x2).layers[0]
    with torch.no_grad():
        out = layer(x1, x2)
    assert row.madd == n * int(torchstat.compute_madd(layer, (x1, x2), out))


@pytest.mark.parametrize("seed", range(8))
def test_upsample_flops_keep_channels(seed):
    r = random.Random(seed)
    c = r.randint(1, 5)
    layer = nn.Upsample(scale_factor=r.choice([2, 3]))
    x = torch.randn(r.randint(1, 3), c, r.randint(2, 6), r.randint(2, 6))
    row, out = run(layer, x)
    assert row.flops == int(torchstat.compute_flops(layer, x, out)) * c  # fix: torchstat drops C
