"""PyTorch side of recipes/bench_engine.lua (reference measurement only, not part of the product).

Builds the same EfficientNet-B0-shaped network as the Lua benchmark (efficientnet_pytorch layout:
static TF-"same" padding, BN eps 1e-3 / momentum 0.01, swish, squeeze-excitation, 1280-d head,
global average pooling, dropout, linear 1280 -> 512) and prints JSON with the median ms per batch
for inference and for a training step (forward + backward + Adam).
Usage: /usr/bin/python3 bench_engine_torch.py BATCH IN_CH HEIGHT WIDTH THREADS REPEATS
"""
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

STAGES = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
          (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]


def same_pad(k, s):
    if s == 1:
        return (k // 2, k // 2)
    return (0, 1) if k == 3 else (1, 2)


class PadConv(nn.Module):
    def __init__(self, cin, cout, k, s=1, groups=1, bias=False):
        super().__init__()
        lo, hi = same_pad(k, s) if k > 1 else (0, 0)
        self.pad = (lo, hi, lo, hi)
        self.conv = nn.Conv2d(cin, cout, k, s, groups=groups, bias=bias)

    def forward(self, x):
        return self.conv(F.pad(x, self.pad) if any(self.pad) else x)


class MBConv(nn.Module):
    def __init__(self, expand, k, s, cin, cout):
        super().__init__()
        mid = cin * expand
        self.expand = expand
        if expand != 1:
            self.expand_conv = PadConv(cin, mid, 1)
            self.bn0 = nn.BatchNorm2d(mid, eps=1e-3, momentum=0.01)
        self.dw = PadConv(mid, mid, k, s, groups=mid)
        self.bn1 = nn.BatchNorm2d(mid, eps=1e-3, momentum=0.01)
        sq = max(1, int(cin * 0.25))
        self.se_reduce = nn.Conv2d(mid, sq, 1)
        self.se_expand = nn.Conv2d(sq, mid, 1)
        self.project = PadConv(mid, cout, 1)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)
        self.skip = s == 1 and cin == cout

    def forward(self, x):
        h = x
        if self.expand != 1:
            h = F.silu(self.bn0(self.expand_conv(h)))
        h = F.silu(self.bn1(self.dw(h)))
        s = F.adaptive_avg_pool2d(h, 1)
        s = self.se_expand(F.silu(self.se_reduce(s)))
        h = h * torch.sigmoid(s)
        h = self.bn2(self.project(h))
        return h + x if self.skip else h


class Net(nn.Module):
    def __init__(self, cin, dim=512):
        super().__init__()
        self.stem = PadConv(cin, 32, 3, 2)
        self.bn0 = nn.BatchNorm2d(32, eps=1e-3, momentum=0.01)
        blocks = []
        for expand, k, s, a, b, n in STAGES:
            for i in range(n):
                blocks.append(MBConv(expand, k, s if i == 0 else 1, a if i == 0 else b, b))
        self.blocks = nn.Sequential(*blocks)
        self.head = PadConv(320, 1280, 1)
        self.bn1 = nn.BatchNorm2d(1280, eps=1e-3, momentum=0.01)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(1280, dim)

    def forward(self, x):
        h = F.silu(self.bn0(self.stem(x)))
        h = self.blocks(h)
        h = F.silu(self.bn1(self.head(h)))
        h = F.adaptive_avg_pool2d(h, 1).flatten(1)
        return self.fc(self.drop(h))


def median_ms(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return times[len(times) // 2]


def main():
    batch, cin, h, w, threads, repeats = (int(a) for a in sys.argv[1:7])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = Net(cin)
    x = torch.randn(batch, cin, h, w)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    net.eval()

    def infer():
        with torch.no_grad():
            net(x)

    inference = median_ms(infer, repeats)
    net.train()

    def train_step():
        opt.zero_grad()
        net(x).square().mean().backward()
        opt.step()

    train = median_ms(train_step, repeats)
    print(json.dumps({"inference_ms": inference, "train_ms": train, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
