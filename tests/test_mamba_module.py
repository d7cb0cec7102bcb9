"""mvscan.modules.Mamba: mamba_ssm's Mamba block contract (parameters, initialisation), the fused
training path against the unfused one, and generation: prefill then token-by-token steps, and
chunked prefill with carried states, each equal to one full forward."""

from __future__ import annotations

import pytest
import torch

import backends
from backends import to_backend
from helpers import rel_err
from mvscan.modules import InferenceParams, Mamba

# mamba_ssm.modules.mamba_simple.Mamba's parameters for d_model 16 (d_inner 32, dt_rank 1).
MAMBA_SSM_PARAMS = {
    "A_log": (32, 8), "D": (32,), "in_proj.weight": (64, 16), "conv1d.weight": (32, 1, 4),
    "conv1d.bias": (32,), "x_proj.weight": (17, 32), "dt_proj.weight": (32, 1),
    "dt_proj.bias": (32,), "out_proj.weight": (16, 32)}


def make_block(dtype=torch.float64, d_conv=4, seed=0, **kw) -> Mamba:
    torch.manual_seed(seed)
    block = Mamba(16, d_state=8, d_conv=d_conv, layer_idx=0, dtype=dtype, **kw)
    with torch.no_grad():  # away from the initialisation's zeros, so every path matters
        block.conv1d.bias.normal_()
        block.D.normal_()
    return block


def test_parameters_match_mamba_ssm():
    block = make_block(torch.float32)
    assert {k: tuple(v.shape) for k, v in block.state_dict().items()} == MAMBA_SSM_PARAMS
    A = -torch.exp(block.A_log.detach())
    torch.testing.assert_close(A[0], -torch.arange(1, 9, dtype=torch.float32))
    dt = torch.nn.functional.softplus(block.dt_proj.bias)
    assert bool(((dt >= 1e-3 * 0.999) & (dt <= 0.1 * 1.001)).all())
    assert block.A_log.dtype == block.D.dtype == torch.float32


def test_parameters_stay_float32_under_a_half_dtype():
    block = Mamba(16, dtype=torch.bfloat16)
    assert block.A_log.dtype == block.D.dtype == torch.float32
    assert block.in_proj.weight.dtype == torch.bfloat16


@backends.over("cpu", "cuda")
def test_fused_training_path_equals_unfused(backend):
    """use_fast_path (one mamba_inner_fn node) and the separate functions: same loss and
    gradients for every parameter and the input."""
    x = torch.randn(2, 40, 16, dtype=torch.float64)
    results = []
    for fast in (True, False):
        block = to_backend(backend, make_block(use_fast_path=fast))
        inp = to_backend(backend, x).requires_grad_(True)
        loss = block(inp).square().sum()
        params = [inp] + list(block.parameters())
        results.append((loss.detach().cpu(), [g.cpu() for g in torch.autograd.grad(loss, params)]))
    (l1, g1), (l2, g2) = results
    assert rel_err(l1, l2) <= 1e-12
    for a, b in zip(g1, g2):
        assert rel_err(a, b) <= 1e-10


@backends.over("cpu", "cuda")
@pytest.mark.parametrize("d_conv", [4, 1])
def test_prefill_then_steps_equal_one_pass(backend, d_conv):
    """A prefill of 5 tokens filling the cache, then one token at a time through step(), equals
    the full sequence's forward."""
    block = to_backend(backend, make_block(d_conv=d_conv)).eval()
    x = to_backend(backend, torch.randn(3, 12, 16, dtype=torch.float64))
    with torch.no_grad():
        want = block(x)
        params = InferenceParams(max_seqlen=12, max_batch_size=3)
        outs = [block(x[:, :5], params)]
        params.seqlen_offset = 5
        for t in range(5, 12):
            outs.append(block(x[:, t:t + 1], params))
            params.seqlen_offset += 1
    got = torch.cat(outs, dim=1)
    assert rel_err(got.cpu(), want.cpu()) <= 1e-12


@backends.over("cpu", "cuda")
@pytest.mark.parametrize("cuts", [(0, 2, 3, 9, 20), (0, 7, 20)], ids=["short-chunks", "long"])
def test_chunked_prefill_equals_one_pass(backend, cuts):
    """Chunks (shorter and longer than d_conv) continuing from the cached states, then one
    decode step, equal one pass."""
    block = to_backend(backend, make_block()).eval()
    x = to_backend(backend, torch.randn(2, 21, 16, dtype=torch.float64))
    with torch.no_grad():
        want = block(x)
        params = InferenceParams(max_seqlen=21, max_batch_size=2)
        outs = []
        for t0, t1 in zip(cuts[:-1], cuts[1:]):
            outs.append(block(x[:, t0:t1], params))
            params.seqlen_offset = t1
        outs.append(block(x[:, 20:21], params))
    assert rel_err(torch.cat(outs, dim=1).cpu(), want.cpu()) <= 1e-12


def test_cache_allocation_and_errors():
    block = make_block(torch.float32)
    conv_state, ssm_state = block.allocate_inference_cache(3, 10)
    assert conv_state.shape == (3, 32, 4) and ssm_state.shape == (3, 32, 8)
    with pytest.raises(ValueError, match="layer_idx must be set"):
        Mamba(16)(torch.randn(1, 3, 16), InferenceParams(max_seqlen=3, max_batch_size=1))
    with pytest.raises(ValueError, match=r"hidden_states must be \(batch, 1, d_model\)"):
        block.step(torch.randn(1, 2, 16), conv_state[:1], ssm_state[:1])
    with pytest.raises(ValueError, match="dt_init must be"):
        Mamba(16, dt_init="zeros")


def test_compile_fullgraph_training_step():
    block = make_block(torch.float32)
    x = torch.randn(2, 30, 16, requires_grad=True)
    compiled = torch.compile(block, fullgraph=True)
    torch._dynamo.reset()
    got = torch.autograd.grad(compiled(x).square().sum(), [x, block.A_log])
    want = torch.autograd.grad(block(x).square().sum(), [x, block.A_log])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
