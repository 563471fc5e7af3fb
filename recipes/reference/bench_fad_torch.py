"""PyTorch side of recipes/bench_fad.lua (reference measurement only, not part of the product).

Runs the FAD job the Lua benchmark timed, with the weights it wrote into DIR, the way the FAD libraries
(gudgud96/frechet_audio_distance, microsoft/fadtk) run it: for each file of DIR/audio (sorted) read it with
soundfile, resample it to the backbone's rate with resampy (their resampler; torchaudio.functional.resample
when resampy is missing), embed it, and from the pooled frames of the first HALF files and of the rest the
NumPy mean and covariance and the Fréchet distance with scipy.linalg.sqrtm (frechet_audio_distance's
calculate_frechet_distance). Prints JSON: per backbone {ms, fad, frames, dim}, and the versions.
Backbones:
  vggish   DIR/vggish.safetensors, a torchvggish state dict, loaded into torchvggish's VGG as restated in
           spec/fixtures/gen_vggish.py (real widths), without the final ReLU; its log-mel examples
  encodec  DIR/encodec, a transformers EncodecModel folder (encoder weights only: the quantizer and the
           decoder are initialised by transformers and not used); model.encoder(wave) -> (T, 128)
  clap     DIR/clap, a transformers ClapModel folder; 10 s chunks every 1 s zero-padded at the end (fadtk's
           framing), ClapFeatureExtractor, get_audio_features (L2-normalised), 8 chunks a batch
Usage: python bench_fad_torch.py DIR THREADS BACKBONES HALF [auto|soxr]   (torch 1.13, transformers 4.38)
  soxr: resample with python-soxr HQ instead, cocola's resampler (libsoxr HQ), to compare like with like
Loading a model (and resampy's first, compiling call on a short wave) is not timed; the job is, once.
"""
import glob
import json
import os
import sys
import time

import numpy as np
import scipy
import soundfile as sf
import torch
from safetensors.torch import load_file
from scipy import linalg

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "spec", "fixtures"))

def pick_resampler(which):
    """auto: resampy (the FAD libraries' resampler), else torchaudio.functional.resample; soxr: python-soxr
    HQ, the library (libsoxr) and quality cocola resamples with"""
    if which == "soxr":
        import soxr

        def resample(x, sr, target):
            return x if sr == target else soxr.resample(x, sr, target, quality="HQ").astype(np.float32)

        return resample, "python-soxr %s (HQ)" % soxr.__version__
    try:
        import resampy

        def resample(x, sr, target):
            return resampy.resample(x, sr, target) if sr != target else x

        return resample, "resampy %s (kaiser_best)" % resampy.__version__
    except ImportError:
        import torchaudio

        def resample(x, sr, target):
            if sr == target:
                return x
            return torchaudio.functional.resample(torch.from_numpy(x), sr, target).numpy()

        return resample, "torchaudio %s functional.resample" % torchaudio.__version__


# frechet_audio_distance (gudgud96) calculate_frechet_distance
def calculate_frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    mu1 = np.atleast_1d(mu1)
    mu2 = np.atleast_1d(mu2)
    sigma1 = np.atleast_2d(sigma1)
    sigma2 = np.atleast_2d(sigma2)
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1.dot(sigma2).astype(complex), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset).astype(complex))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    tr_covmean = np.trace(covmean)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def stats(embeddings):
    e = np.concatenate(embeddings, axis=0)
    return np.mean(e, axis=0), np.cov(e, rowvar=False), e.shape[0], e.shape[1]


def open_vggish(folder):
    import gen_vggish as tv

    model = tv.VGG(tv.make_layers(tv.REAL_CHANNELS), tv.REAL_EMBEDDINGS)
    model.load_state_dict(load_file(os.path.join(folder, "vggish.safetensors")), strict=True)
    # the FAD libraries drop the final ReLU
    model.embeddings = torch.nn.Sequential(*list(model.embeddings.children())[:-1])
    model.eval()

    def embed(wave):
        x = tv.waveform_to_examples(wave.astype(np.float64), tv.SAMPLE_RATE, return_tensor=False)
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(x)).float()[:, None]).numpy()

    return 16000, embed


def load_strict_encoder(model, path, prefixes):
    sd = load_file(path)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k.startswith(prefixes)]
    if missing or unexpected:
        raise RuntimeError("weights do not match: missing %s, unexpected %s" % (missing[:5], unexpected[:5]))


def open_encodec(folder):
    from transformers import EncodecModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    model = EncodecModel.from_pretrained(os.path.join(folder, "encodec")).eval()
    load_strict_encoder(model, os.path.join(folder, "encodec", "model.safetensors"), ("encoder.",))

    def embed(wave):
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None, None]
            return model.encoder(x)[0].T.numpy()

    return model.config.sampling_rate, embed


def open_clap(folder):
    from transformers import ClapFeatureExtractor, ClapModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    path = os.path.join(folder, "clap")
    model = ClapModel.from_pretrained(path).eval()
    load_strict_encoder(model, os.path.join(path, "model.safetensors"), ("audio_model.", "audio_projection."))
    with open(os.path.join(path, "preprocessor_config.json")) as f:
        fe = ClapFeatureExtractor(**{k: v for k, v in json.load(f).items() if k != "feature_extractor_type"})
    sr = fe.sampling_rate
    chunk, hop, batch = 10 * sr, 1 * sr, 8

    def embed(wave):
        chunks = []
        for s in range(0, len(wave), hop):
            c = wave[s:s + chunk]
            if len(c) < chunk:
                c = np.concatenate([c, np.zeros(chunk - len(c), dtype=c.dtype)])
            chunks.append(c)
        out = []
        with torch.no_grad():
            for i in range(0, len(chunks), batch):
                x = fe(chunks[i:i + batch], sampling_rate=sr, return_tensors="pt")["input_features"].float()
                out.append(model.get_audio_features(input_features=x).numpy())
        return np.concatenate(out, axis=0)

    return sr, embed


OPENERS = {"vggish": open_vggish, "encodec": open_encodec, "clap": open_clap}


def main():
    folder, threads, names, half = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), int(sys.argv[4])
    resample, resampler = pick_resampler(sys.argv[5] if len(sys.argv) > 5 else "auto")
    torch.set_num_threads(threads)
    paths = sorted(glob.glob(os.path.join(folder, "audio", "*.wav")))
    result = {"resampler": resampler, "torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__}
    import transformers

    result["transformers"] = transformers.__version__
    for name in names:
        sr, embed = OPENERS[name](folder)
        resample(np.zeros(1600, dtype=np.float32), 16000, sr)  # resampy compiles on its first call
        t0 = time.perf_counter()
        halves = [[], []]
        for i, p in enumerate(paths):
            wave, file_sr = sf.read(p, dtype="float32")
            if wave.ndim > 1:
                wave = wave.mean(axis=1)
            halves[0 if i < half else 1].append(embed(resample(wave, file_sr, sr)))
            print("%s %d/%d" % (name, i + 1, len(paths)), file=sys.stderr, flush=True)
        mu1, s1, n1, d = stats(halves[0])
        mu2, s2, n2, _ = stats(halves[1])
        fad = calculate_frechet_distance(mu1, s1, mu2, s2)
        ms = (time.perf_counter() - t0) * 1000
        result[name] = {"ms": ms, "fad": fad, "frames": n1 + n2, "dim": d}
        del embed
    print(json.dumps(result))


if __name__ == "__main__":
    main()
