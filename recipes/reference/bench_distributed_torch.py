"""PyTorch side of recipes/bench_distributed.lua (reference measurement only, not part of the product).

Data-parallel COCOLA training steps with torch.distributed (gloo backend, CPU) and
DistributedDataParallel, the same model as recipes/reference/bench_cuda_torch.py (the EfficientNet-B0
shaped encoder of bench_engine_torch.py, 2 input channels, LayerNorm, tanh, bilinear similarity): each
of N processes encodes PER_RANK anchors and positives (random features of HEIGHT x WIDTH), the
embeddings are all-gathered with their gradient (torch.distributed.nn.all_gather) so that the loss is
the cross-entropy of the global K x K matrix, DDP averages the gradients (bucketed, overlapped with the
backward), Adam lr 1e-4. Features are inputs here (cocola's figure beside it subtracts its feature time).
Prints JSON {"ranks", "per_rank", "step"} (mean seconds of a step after one warm-up).
Usage: /usr/bin/python3 bench_distributed_torch.py RANKS PER_RANK HEIGHT WIDTH STEPS THREADS
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def worker(rank, n, per_rank, h, w, steps, threads, queue):
    import torch
    import torch.distributed as dist
    import torch.distributed.nn as dnn
    import torch.nn as nn
    import torch.nn.functional as F
    from bench_engine_torch import Net

    torch.set_num_threads(threads)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    dist.init_process_group("gloo", rank=rank, world_size=n)

    class Cocola(nn.Module):
        def __init__(self, dim=512):
            super().__init__()
            self.encoder = Net(2, dim)
            self.layer_norm = nn.LayerNorm(dim)
            self.w = nn.Parameter(torch.randn(dim, dim) * 0.05)

        def forward(self, a, p):
            return torch.tanh(self.layer_norm(self.encoder(torch.cat([a, p]))))

    torch.manual_seed(0)
    model = Cocola()
    ddp = nn.parallel.DistributedDataParallel(model) if n > 1 else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    a = torch.randn(per_rank, 2, h, w)
    p = torch.randn(per_rank, 2, h, w)
    labels = torch.arange(per_rank * n)

    def step():
        opt.zero_grad()
        e = ddp(a, p)
        ea, ep = e[:per_rank], e[per_rank:]
        if n > 1:
            ea, ep = torch.cat(dnn.all_gather(ea)), torch.cat(dnn.all_gather(ep))
        sim = ea @ (model.w @ ep.t())
        F.cross_entropy(sim, labels).backward()
        opt.step()

    step()
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dist.barrier()
    if rank == 0:
        queue.put((time.perf_counter() - t0) / steps)
    dist.destroy_process_group()


def main():
    n, per_rank, h, w, steps, threads = (int(x) for x in sys.argv[1:7])
    try:
        import torch.multiprocessing as mp
    except ImportError as e:
        print(json.dumps({"error": "torch is not installed (%s)" % e}))
        return
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    procs = [ctx.Process(target=worker, args=(r, n, per_rank, h, w, steps, threads, queue)) for r in range(n)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    if any(proc.exitcode != 0 for proc in procs):
        print(json.dumps({"error": "a torch process failed"}))
        return
    print(json.dumps({"ranks": n, "per_rank": per_rank, "step": queue.get()}))


if __name__ == "__main__":
    main()
