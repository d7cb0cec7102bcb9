"""MambaVision on a GPU: the mvscan path (CUDA scan and conv kernels) against the reference path
(F.conv1d + the pure-PyTorch scan) with the same weights, in float32 inference and training,
and fp16 autocast with channels_last (the benchmark setting). Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mambavision
from helpers import max_err, rel_err

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def no_tf32():
    """Full float32 convolutions and matmuls, so the two paths differ by the scan alone."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def model_pair(**kw):
    torch.manual_seed(0)
    ours = mambavision.create_model("mamba_vision_T", **kw).cuda()
    ref = mambavision.create_model("mamba_vision_T", scan_backend="reference", **kw).cuda()
    ref.load_state_dict(ours.state_dict())
    return ours, ref


@pytest.mark.parametrize("size", [(224, 224), (100, 130)])
def test_inference_matches_reference_path(size):
    ours, ref = (m.eval() for m in model_pair())
    x = torch.randn(4, 3, *size, device="cuda")
    with torch.no_grad():
        got, want = ours(x), ref(x)
    assert rel_err(got, want) < 1e-4 and max_err(got, want) < 1e-3


def test_training_gradients_match_reference_path():
    ours, ref = model_pair(num_classes=7, drop_path_rate=0.0)
    x = torch.randn(4, 3, 96, 96, device="cuda")
    target = torch.arange(4, device="cuda")
    grads = []
    for model in (ours, ref):
        model.train()
        F.cross_entropy(model(x), target).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    scale = max(g.abs().max().item() for g in grads[1].values())
    for name, want in grads[1].items():
        got = grads[0][name]
        if want.abs().max().item() <= 1e-4 * scale:
            # A conv bias right before BatchNorm: its gradient is 0 up to rounding on both paths,
            # so only an absolute bound means anything.
            assert max_err(got, want) <= 1e-4 * scale, name
        else:
            assert rel_err(got, want) < 1e-3, name


def test_fp16_autocast_channels_last():
    ours, _ = model_pair()
    ours = ours.eval().to(memory_format=torch.channels_last)
    x = torch.randn(8, 3, 224, 224, device="cuda").to(memory_format=torch.channels_last)
    with torch.no_grad():
        want = ours(x)
        with torch.autocast("cuda", dtype=torch.float16):
            got = ours(x)
    assert torch.isfinite(got).all()
    assert F.cosine_similarity(got.float().flatten(), want.flatten(), dim=0) > 0.99
