"""PyTorch side of recipes/bench_cuda.lua (reference measurement only, not part of the product).

The COCOLA model as the Lua benchmark runs it, in PyTorch on the GPU with cuDNN: the EfficientNet-B0
shaped encoder of bench_engine_torch.py (2 input channels, 1280 -> 512 head, dropout 0.1), LayerNorm,
tanh and the bilinear similarity a W p^T over one encoder batch of 2K; the contrastive cross-entropy
against the diagonal; Adam lr 1e-3. cudnn.benchmark on (an algorithm per shape, as cocola caches),
TF32 as asked (off: plain FP32, as cocola's default), and with AUTOCAST 1 the forward under
torch.autocast("cuda", dtype=torch.bfloat16) (cocola's autocast=bf16). Prints JSON with the median wall-clock ms of
inference and of a training step (synchronised), or {"error": ...} when torch has no CUDA.
Usage: /usr/bin/python3 bench_cuda_torch.py K HEIGHT WIDTH REPEATS WARMUP TF32(0|1) [AUTOCAST(0|1)]
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    k, h, w, repeats, warmup, tf32 = (int(a) for a in sys.argv[1:7])
    autocast = len(sys.argv) > 7 and sys.argv[7] == "1"
    try:
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
    except ImportError as e:
        print(json.dumps({"error": "torch is not installed (%s)" % e}))
        return
    if not torch.cuda.is_available():
        print(json.dumps({"error": "torch %s has no usable CUDA device" % torch.__version__}))
        return
    from bench_engine_torch import Net

    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    torch.backends.cudnn.allow_tf32 = bool(tf32)
    # torch >= 2.9 also has per-backend precision settings: state them, so fp32 is IEEE fp32 there too
    for backend in (getattr(torch.backends.cudnn, "conv", None), getattr(torch.backends.cuda, "matmul", None)):
        if backend is not None and hasattr(backend, "fp32_precision"):
            backend.fp32_precision = "tf32" if tf32 else "ieee"
    dev = torch.device("cuda")

    class Cocola(nn.Module):
        def __init__(self, dim=512):
            super().__init__()
            self.encoder = Net(2, dim)
            self.layer_norm = nn.LayerNorm(dim)
            self.w = nn.Parameter(torch.randn(dim, dim) * 0.05)

        def forward(self, a, p):
            e = torch.tanh(self.layer_norm(self.encoder(torch.cat([a, p]))))
            ea, ep = e[: a.shape[0]], e[a.shape[0]:]
            return ea @ (self.w @ ep.t())

    torch.manual_seed(0)
    model = Cocola().to(dev)
    anchors = torch.randn(k, 2, h, w, device=dev)
    positives = torch.randn(k, 2, h, w, device=dev)
    labels = torch.arange(k, device=dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def median_ms(fn):
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        return times[(len(times) + 1) // 2 - 1]

    model.eval()

    def forward():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            return model(anchors, positives).float()

    def infer():
        with torch.no_grad():
            forward()

    inference = median_ms(infer)
    model.train()
    torch.cuda.reset_peak_memory_stats()

    def train_step():
        opt.zero_grad()
        F.cross_entropy(forward(), labels).backward()
        opt.step()

    train = median_ms(train_step)
    print(json.dumps({
        "inference_ms": inference,
        "train_ms": train,
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
        "device": torch.cuda.get_device_name(0),
        "peak_allocated": torch.cuda.max_memory_allocated(),
    }))


if __name__ == "__main__":
    main()
