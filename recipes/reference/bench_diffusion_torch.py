"""PyTorch side of recipes/bench_diffusion.lua (reference measurement only, not part of the product).

Loads the U-Net the Lua benchmark wrote (a diffusers folder: unet/config.json + safetensors), builds the
CompoNet ControlNet from it with the Lua side's weights, and prints JSON with the median ms of a U-Net
forward, a CompoNet DDIM step (ControlNet + U-Net + DDIMScheduler.step) and a forward + backward, and the
process's peak resident memory after inference and after the training step.
Usage: python bench_diffusion_torch.py DIR THREADS REPEATS [PIPELINE STEPS SECONDS PIPELINE_REPEATS]
(diffusers 0.27.2 on torch 1.13)
With PIPELINE (a diffusers AudioLDM 2 folder) it also times AudioLDM2Pipeline from a prompt to audio.
"""
import json
import resource
import sys
import time

import diffusers
import torch
from diffusers import DDIMScheduler
from diffusers.pipelines.audioldm2.modeling_audioldm2 import AudioLDM2UNet2DConditionModel
from safetensors.torch import load_file


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median_ms(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return times[(len(times) - 1) // 2]


def main():
    folder, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    unet = AudioLDM2UNet2DConditionModel.from_pretrained(folder + "/unet").eval()
    x = load_file(folder + "/inputs.safetensors")
    z, w = x["z"], x["w"]
    text = dict(encoder_hidden_states=x["states"], encoder_hidden_states_1=x["states_1"],
                encoder_attention_mask_1=x["mask_1"])
    t = torch.tensor([501] * z.shape[0])
    # the ControlNet: the U-Net's input half run on conv_in(z) + cond_embedding(w), 1x1 convs on the skips
    cn_sd = load_file(folder + "/controlnet/weights.safetensors")
    import copy
    cn = copy.deepcopy(unet)
    cn.load_state_dict({k: v for k, v in cn_sd.items() if k in cn.state_dict()}, strict=False)
    cond = torch.nn.Conv2d(8, 128, 3, padding=1)
    cond.load_state_dict({"weight": cn_sd["controlnet_cond_embedding.weight"],
                          "bias": cn_sd["controlnet_cond_embedding.bias"]})
    zeros = []
    i = 0
    while "controlnet_down_blocks.%d.weight" % i in cn_sd:
        wgt = cn_sd["controlnet_down_blocks.%d.weight" % i]
        conv = torch.nn.Conv2d(wgt.shape[1], wgt.shape[0], 1)
        conv.load_state_dict({"weight": wgt, "bias": cn_sd["controlnet_down_blocks.%d.bias" % i]})
        zeros.append(conv)
        i += 1
    mid_w = cn_sd["controlnet_mid_block.weight"]
    mid_conv = torch.nn.Conv2d(mid_w.shape[1], mid_w.shape[0], 1)
    mid_conv.load_state_dict({"weight": mid_w, "bias": cn_sd["controlnet_mid_block.bias"]})
    mask1 = ((1 - text["encoder_attention_mask_1"]) * -10000.0).unsqueeze(1)

    def controlnet():
        emb = cn.time_embedding(cn.time_proj(t).to(z.dtype))
        h = cn.conv_in(z) + cond(w)
        res = (h,)
        for blk in cn.down_blocks:
            if getattr(blk, "has_cross_attention", False):
                h, r = blk(hidden_states=h, temb=emb, encoder_hidden_states=text["encoder_hidden_states"],
                           encoder_hidden_states_1=text["encoder_hidden_states_1"], encoder_attention_mask_1=mask1)
            else:
                h, r = blk(hidden_states=h, temb=emb)
            res += r
        h = cn.mid_block(h, emb, encoder_hidden_states=text["encoder_hidden_states"],
                         encoder_hidden_states_1=text["encoder_hidden_states_1"], encoder_attention_mask_1=mask1)
        return [c(r) for c, r in zip(zeros, res)], mid_conv(h)

    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.0015,
                          beta_end=0.0195, set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading")
    sched.set_timesteps(200)

    def forward():
        with torch.no_grad():
            return unet(z, t, **text).sample

    def step():
        # the residuals enter the skips as CompoNet's modified U-Net adds them; diffusers 0.27.2's AudioLDM 2
        # U-Net has no residual arguments, so the cost measured is ControlNet + U-Net + scheduler step
        with torch.no_grad():
            controlnet()
            eps = unet(z, t, **text).sample
            return sched.step(eps, 501, z).prev_sample

    forward_ms = median_ms(forward, repeats)
    step_ms = median_ms(step, repeats)
    infer_peak = peak_mb()
    unet.train()

    def train():
        unet.zero_grad(set_to_none=True)
        loss = unet(z, t, **text).sample.pow(2).mean()
        loss.backward()

    train_ms = median_ms(train, repeats)
    train_peak = peak_mb()
    prompt_ms = None
    if len(sys.argv) > 5 and sys.argv[4]:
        from diffusers import AudioLDM2Pipeline
        pipe = AudioLDM2Pipeline.from_pretrained(sys.argv[4])
        pipe.set_progress_bar_config(disable=True)
        steps = int(sys.argv[5])
        seconds = float(sys.argv[6]) if len(sys.argv) > 6 else 0.016
        prompt_repeats = int(sys.argv[7]) if len(sys.argv) > 7 else repeats
        latents = load_file(folder + "/pipeline_latents.safetensors")["latents"]

        def prompt():
            with torch.no_grad():
                return pipe(["in: bass, drums; out: guitar, piano"], audio_length_in_s=seconds, num_inference_steps=steps,
                            guidance_scale=3.5, latents=latents.clone(), output_type="pt").audios

        prompt_ms = median_ms(prompt, prompt_repeats)
    print(json.dumps({"forward_ms": forward_ms, "step_ms": step_ms, "train_ms": train_ms, "prompt_ms": prompt_ms,
                      "infer_peak_mb": infer_peak, "train_peak_mb": train_peak, "torch": torch.__version__,
                      "diffusers": diffusers.__version__}))


if __name__ == "__main__":
    main()
