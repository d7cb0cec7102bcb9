"""CPU MambaForCausalLM (Hugging Face transformers, the 130m layer shape, 4 layers, random
weights): prefill tokens/s and decode tokens/s through transformers' own PyTorch path
("reference"), its mambapy path (when mambapy is installed) and mvscan
(mvscan.integrations.transformers), same weights, same run. The model and the rows come from
mvscan.lm_benchmark, which `python -m mvscan.benchmark --model mamba` runs interleaved.
`pytest benchmarks/ --benchmark-only`."""

from __future__ import annotations

import pytest

from mvscan import lm_benchmark

pytest.importorskip("transformers")

# Peers first: ratios are taken against backends measured before in the same group.
PATHS = {"reference": "torch", "mambapy": "mambapy", "mvscan": "mvscan"}


@pytest.fixture(scope="module")
def model():
    return lm_benchmark.build_model(layers=4)


def timed(benchmark, record_ratio, model, group, backend, fn, tokens_done):
    if PATHS[backend] not in lm_benchmark.available_paths():
        pytest.skip(f"{backend} is not installed")
    benchmark.group = group

    def run():
        with lm_benchmark.use_path(model, PATHS[backend]):
            return fn()

    out = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    record_ratio(group, backend)
    if benchmark.stats is not None:
        benchmark.extra_info["tokens_per_s"] = round(tokens_done / benchmark.stats.stats.median)
    return out


@pytest.mark.parametrize("backend", list(PATHS))
@pytest.mark.parametrize("batch,tokens", lm_benchmark.PREFILL_ROWS,
                         ids=[f"{b}x{t}" for b, t in lm_benchmark.PREFILL_ROWS])
def test_prefill(benchmark, record_ratio, model, batch, tokens, backend):
    logits = timed(benchmark, record_ratio, model,
                   f"mamba-130m x4 layers cpu fp32 prefill {batch}x{tokens}", backend,
                   lm_benchmark.prefill_fn(model, batch, tokens), batch * tokens)
    assert logits.shape == (batch, tokens, lm_benchmark.VOCAB)


@pytest.mark.parametrize("backend", list(PATHS))
@pytest.mark.parametrize("batch,new", lm_benchmark.DECODE_ROWS,
                         ids=[f"b{b}-{n}new" for b, n in lm_benchmark.DECODE_ROWS])
def test_decode(benchmark, record_ratio, model, batch, new, backend):
    out = timed(benchmark, record_ratio, model,
                f"mamba-130m x4 layers cpu fp32 greedy decode b{batch} {new} tokens", backend,
                lm_benchmark.decode_fn(model, batch, new), batch * new)
    assert out.shape == (batch, lm_benchmark.DECODE_PROMPT + new)
