"""CPU decode latency: one token through mvscan's selective_state_update and causal_conv1d_update
vs the pure-PyTorch references in the same run, at batch 1 and 64, for one layer of the 130M
Mamba-1 (dim 1536, N 16) and Mamba-2 (24 heads x 64, N 128, one group) language models, fp32.
`pytest benchmarks/test_decode_cpu.py --benchmark-only`."""

from __future__ import annotations

import pytest
import torch

import mvscan

STATE_UPDATE = {"reference": mvscan.selective_state_update_ref,
                "mvscan": mvscan.selective_state_update}
CONV_UPDATE = {"reference": mvscan.causal_conv1d_update_ref, "mvscan": mvscan.causal_conv1d_update}
# name: (heads or None for Mamba-1's 3-d layout, dim per head, N, conv channels, K)
LAYERS = {"mamba1-130m": (None, 1536, 16, 1536, 4), "mamba2-130m": (24, 64, 128, 1792, 4)}
BATCHES = (1, 64)


def state_update_inputs(layer: str, batch: int) -> dict[str, torch.Tensor]:
    """One layer's decode-step arguments, laid out as mamba_ssm's step() passes them (Mamba-2:
    A, dt, D and dt_bias expanded per head with stride 0)."""
    heads, dim, N, _, _ = LAYERS[layer]
    g = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    if heads is None:
        return dict(state=randn(batch, dim, N) * 0.1, x=randn(batch, dim), dt=randn(batch, dim),
                    A=-torch.rand(dim, N, generator=g) - 0.1, B=randn(batch, N), C=randn(batch, N),
                    D=randn(dim), z=randn(batch, dim), dt_bias=randn(dim) * 0.1)
    return dict(state=randn(batch, heads, dim, N) * 0.1, x=randn(batch, heads, dim),
                dt=randn(batch, heads)[..., None].expand(batch, heads, dim),
                A=(-torch.rand(heads, generator=g) - 0.1)[:, None, None].expand(heads, dim, N),
                B=randn(batch, 1, N), C=randn(batch, 1, N),
                D=randn(heads)[:, None].expand(heads, dim), z=None,
                dt_bias=randn(heads)[:, None].expand(heads, dim) * 0.1)


@pytest.mark.parametrize("backend", list(STATE_UPDATE))  # reference first: the ratio needs it
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("layer", list(LAYERS))
def test_selective_state_update_cpu(benchmark, record_ratio, layer, batch, backend):
    group = f"state update cpu fp32 {layer} batch {batch}"
    benchmark.group = group
    benchmark.extra_info.update(batch=batch, threads=torch.get_num_threads())
    args = state_update_inputs(layer, batch)
    fn = STATE_UPDATE[backend]
    result = benchmark(lambda: fn(**args, dt_softplus=True))
    assert result.shape == args["x"].shape and torch.isfinite(result).all()
    record_ratio(group, backend)


@pytest.mark.parametrize("backend", list(CONV_UPDATE))  # reference first: the ratio needs it
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("layer", list(LAYERS))
def test_causal_conv1d_update_cpu(benchmark, record_ratio, layer, batch, backend):
    _, _, _, channels, K = LAYERS[layer]
    group = f"conv update cpu fp32 {layer} batch {batch}"
    benchmark.group = group
    benchmark.extra_info.update(batch=batch, threads=torch.get_num_threads())
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, generator=g)
    state = torch.randn(batch, channels, K - 1, generator=g)
    weight, bias = torch.randn(channels, K, generator=g), torch.randn(channels, generator=g)
    fn = CONV_UPDATE[backend]
    result = benchmark(lambda: fn(x, state, weight, bias, "silu"))
    assert result.shape == x.shape and torch.isfinite(result).all()
    record_ratio(group, backend)
