"""CPU Mamba mixer: mvscan.mamba_inner_fn (one autograd node) vs the same mixer written as
separate mvscan functions (mamba_inner_unfused), forward+backward time and the bytes autograd
saves between them, at a Mamba-130m layer's sizes. `pytest benchmarks/ --benchmark-only`."""

from __future__ import annotations

import pytest
import torch

import mvscan
from mvscan.mamba_inner import mamba_inner_unfused
from mvscan.memory import saved_tensor_bytes

# (name, batch, L, d_model, d_inner, N, dt_rank, K)
SHAPES = [("mamba-130m layer", 1, 512, 768, 1536, 16, 48, 4),
          ("mamba-130m layer b4", 4, 128, 768, 1536, 16, 48, 4)]
BACKENDS = {"unfused": mamba_inner_unfused, "mvscan": mvscan.mamba_inner_fn}


def mixer_inputs(batch, L, d_model, d_inner, N, rank, K, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    return dict(
        xz=rand(batch, L, 2 * d_inner).transpose(1, 2),  # in_proj's output, read in place
        conv1d_weight=rand(d_inner, 1, K, scale=0.5), conv1d_bias=rand(d_inner, scale=0.1),
        x_proj_weight=rand(rank + 2 * N, d_inner, scale=d_inner ** -0.5),
        delta_proj_weight=rand(d_inner, rank, scale=rank ** -0.5),
        out_proj_weight=rand(d_model, d_inner, scale=d_inner ** -0.5), out_proj_bias=None,
        A=-torch.arange(1, N + 1, dtype=torch.float32).repeat(d_inner, 1),
        D=torch.ones(d_inner), delta_bias=rand(d_inner, scale=0.5))


@pytest.mark.parametrize("backend", list(BACKENDS))  # the unfused baseline first: ratios need it
@pytest.mark.parametrize("shape", SHAPES, ids=[s[0] for s in SHAPES])
def test_mamba_inner_cpu(benchmark, record_ratio, shape, backend):
    name, batch, L, d_model, d_inner, N, rank, K = shape
    group = f"mamba_inner cpu fp32 fwd+bwd {batch}x{L} d{d_inner} N{N}"
    benchmark.group = group
    inputs = mixer_inputs(batch, L, d_model, d_inner, N, rank, K)
    fn = BACKENDS[backend]
    benchmark.extra_info.update(threads=torch.get_num_threads(),
                                saved_bytes=saved_tensor_bytes(fn, inputs))
    leaves = {k: (v.detach().clone().requires_grad_(True) if v is not None else None)
              for k, v in inputs.items()}
    wrt = [v for v in leaves.values() if v is not None]
    dout = torch.randn(batch, L, d_model)

    def run():
        return torch.autograd.grad(fn(**leaves), wrt, dout)

    assert benchmark(run) is not None
    record_ratio(group, backend)
