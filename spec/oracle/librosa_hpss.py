"""Oracle: COCOLA HPSS features computed by real librosa 0.10.1 (the reference's own pipeline) for a
test signal; writes x.f32 and ref.f32 into the folder given. Run by spec/oracle_spec.lua with /opt/oracle."""
import numpy as np, librosa, struct, json, sys
rng = np.random.default_rng(0)
t = np.arange(80000) / 16000
x = (0.3*np.sin(2*np.pi*220*t) + 0.2*np.sin(2*np.pi*331*t) * (t % 0.5 < 0.05) + 0.05*rng.standard_normal(80000)).astype(np.float32)
S = librosa.stft(x, n_fft=1024, hop_length=160, win_length=400, center=True, pad_mode="constant")
H, P = librosa.decompose.hpss(S)
out = []
for C in (H, P):
    mel = librosa.feature.melspectrogram(S=np.abs(C)**2, sr=16000, n_mels=64, fmin=60, fmax=7800)
    out.append(librosa.power_to_db(mel, ref=np.max, amin=1e-10, top_db=80))
ref = np.stack(out)[None].astype(np.float32)
x.tofile(sys.argv[1] + "/x.f32"); ref.tofile(sys.argv[1] + "/ref.f32")
print(ref.shape)
