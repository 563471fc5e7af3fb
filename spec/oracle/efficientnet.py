"""Oracle: EfficientNet-B0 of the real efficientnet_pytorch 0.7.1 (in_channels 2, include_top False),
BN statistics from one train pass, eval output for a batch; its state dict, input and output go into
effnet.safetensors in the folder given. Run by spec/oracle_spec.lua with /opt/oracle."""
import json, struct, sys

import numpy as np
import torch
from efficientnet_pytorch import EfficientNet
torch.manual_seed(0); torch.set_num_threads(2)
m = EfficientNet.from_name("efficientnet-b0", in_channels=2, include_top=False)
x = torch.rand(3, 2, 64, 501) * -80
m.train()
for mod in m.modules():
    if isinstance(mod, torch.nn.BatchNorm2d): mod.momentum = 1.0
with torch.no_grad(): m(x)
m.eval()
with torch.no_grad(): y = m(x).flatten(1)
tensors = {k: v for k, v in m.state_dict().items()}
tensors["__input"] = x; tensors["__output"] = y
header, blobs, off = {}, [], 0
for k, v in tensors.items():
    a = v.detach().contiguous().numpy()
    dt = {np.float32: "F32", np.int64: "I64"}[a.dtype.type]
    b = a.tobytes(); header[k] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}; blobs.append(b); off += len(b)
h = json.dumps(header).encode(); h += b" " * ((8 - len(h) % 8) % 8)
open(sys.argv[1] + "/effnet.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
print(len(tensors), y.shape, float(y.abs().mean()))
