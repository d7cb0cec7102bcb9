"""CPU MambaForCausalLM (Hugging Face transformers, the 130m layer shape, 4 layers, random
weights): prefill tokens/s and decode tokens/s, transformers' own PyTorch path ("reference") vs
the same model with mvscan.integrations.transformers enabled ("mvscan"), same weights, same run.
`pytest benchmarks/ --benchmark-only`."""

from __future__ import annotations

import pytest
import torch

import mvscan.integrations.transformers as integration

transformers = pytest.importorskip("transformers")

PREFILL = [(1, 1024), (1, 2048), (8, 512)]  # (batch, tokens)
DECODE = [(1, 32), (16, 32)]                # (batch, new tokens) after a 16-token prompt
BACKENDS = ("reference", "mvscan")          # the reference first: the ratio needs it


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = transformers.MambaConfig(vocab_size=1024, hidden_size=768, state_size=16,
                                      num_hidden_layers=4, expand=2, use_mambapy=False)
    return transformers.MambaForCausalLM(config).eval()


def run_with(backend, fn):
    (integration.enable if backend == "mvscan" else integration.disable)()
    try:
        return fn()
    finally:
        integration.disable()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch,tokens", PREFILL, ids=[f"{b}x{t}" for b, t in PREFILL])
def test_prefill(benchmark, record_ratio, model, batch, tokens, backend):
    group = f"mamba-130m x4 layers cpu fp32 prefill {batch}x{tokens}"
    benchmark.group = group
    ids = torch.randint(0, 1024, (batch, tokens), generator=torch.Generator().manual_seed(1))

    def prefill():
        with torch.inference_mode():
            return run_with(backend, lambda: model(ids).logits)

    logits = benchmark.pedantic(prefill, rounds=3, warmup_rounds=1)
    assert logits.shape == (batch, tokens, 1024)
    record_ratio(group, backend)
    if benchmark.stats is not None:
        benchmark.extra_info["tokens_per_s"] = round(batch * tokens / benchmark.stats.stats.median)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch,new", DECODE, ids=[f"b{b}-{n}new" for b, n in DECODE])
def test_decode(benchmark, record_ratio, model, batch, new, backend):
    group = f"mamba-130m x4 layers cpu fp32 greedy decode b{batch} {new} tokens"
    benchmark.group = group
    ids = torch.randint(0, 1024, (batch, 16), generator=torch.Generator().manual_seed(2))

    def decode():
        with torch.inference_mode():
            return run_with(backend, lambda: model.generate(
                ids, max_new_tokens=new, min_new_tokens=new, do_sample=False))

    out = benchmark.pedantic(decode, rounds=3, warmup_rounds=1)
    assert out.shape == (batch, 16 + new)
    record_ratio(group, backend)
    if benchmark.stats is not None:
        benchmark.extra_info["tokens_per_s"] = round(batch * new / benchmark.stats.stats.median)
