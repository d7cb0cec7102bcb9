"""The kernels `scripts/gpu_session.sh` profiles with Nsight Compute: one MambaVision-T training
step (bf16 autocast, batch 64, channels_last: every conv and scan kernel of stages 3 and 4, forward
and backward) and the Mamba LM scan row (8 x 1536 x 2048, N 16; bf16 and fp32, forward and
backward). benchmarks/results/ holds the tables earlier runs made from it."""
import torch

import mambavision
import mvscan
from mvscan.benchmark import forward_backward_fn, make_scan_inputs

model = mambavision.create_model("mamba_vision_T").cuda().to(memory_format=torch.channels_last)
x = torch.randn(64, 3, 224, 224, device="cuda").to(memory_format=torch.channels_last)
with torch.autocast("cuda", dtype=torch.bfloat16):
    loss = model(x).float().square().mean()
loss.backward()
for dtype in (torch.bfloat16, torch.float32):
    inputs = make_scan_inputs(8, 1536, 2048, 16, dtype=dtype, device="cuda")
    forward_backward_fn(mvscan.selective_scan, inputs)()
torch.cuda.synchronize()
print("ncu case ok")
