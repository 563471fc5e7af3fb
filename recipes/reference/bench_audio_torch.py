"""PyTorch side of recipes/bench_audio.lua (reference measurement only, not part of the product).

torchaudio MelSpectrogram(16 kHz, n_fft 1024, win 400, hop 160, f 60-7800, 64 mels) + AmplitudeToDB on a
batch of random 5 s windows; prints JSON {"torchaudio_mel_ms": median ms per batch}.
Usage: /usr/bin/python3 bench_audio_torch.py BATCH SAMPLES THREADS REPEATS
"""
import json
import sys
import time

import torch
import torchaudio

batch, samples, threads, repeats = (int(a) for a in sys.argv[1:5])
torch.set_num_threads(threads)
torch.manual_seed(0)
x = torch.randn(batch, samples) * 0.1
tf = torch.nn.Sequential(
    torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=1024, win_length=400, hop_length=160, f_min=60.0,
                                         f_max=7800.0, n_mels=64, power=2.0),
    torchaudio.transforms.AmplitudeToDB())
times = []
with torch.no_grad():
    tf(x)
    for _ in range(repeats):
        t0 = time.perf_counter()
        tf(x)
        times.append((time.perf_counter() - t0) * 1e3)
times.sort()
print(json.dumps({"torchaudio_mel_ms": times[len(times) // 2], "batch": batch, "threads": threads}))
