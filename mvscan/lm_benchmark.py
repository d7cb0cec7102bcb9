"""Prefill and decode throughput of Hugging Face transformers' MambaForCausalLM (the 130m layer
shape: hidden 768, state 16, expand 2; random weights) through transformers' own PyTorch path,
its mambapy path (when the mambapy package is installed) and mvscan, on the same model in the
same run: what `python -m mvscan.benchmark --model mamba` prints.

The three paths are interleaved row by row, so a shared host's drift affects them alike. On a GPU
with mamba_ssm and causal-conv1d installed, transformers runs their kernels whatever
use_mambapy says: its 'torch' and 'mambapy' columns then both measure mamba_ssm (untested here:
no GPU run of this benchmark yet)."""

from __future__ import annotations

import contextlib
import importlib.util
import statistics
from collections.abc import Callable, Iterator

import torch

from .integrations import transformers as integration
from .timing import timed_runs

# (batch, prompt tokens): prefill rows; (batch, new tokens) after a 16-token prompt: decode rows.
PREFILL_ROWS = ((1, 1024), (1, 2048), (8, 512))
DECODE_ROWS = ((1, 128), (16, 128))
DECODE_PROMPT = 16
VOCAB = 1024
FIRST_ID = 3  # prompts avoid ids 0-2: MambaConfig's bos, eos and pad tokens are 0


def available_paths() -> tuple[str, ...]:
    """'torch' (transformers' sequential PyTorch scan), 'mambapy' (its parallel scan; needs the
    mambapy package) and 'mvscan', in the order they are timed."""
    paths = ["torch"]
    if importlib.util.find_spec("mambapy") is not None:
        paths.append("mambapy")
    return (*paths, "mvscan")


def build_model(layers: int = 4, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32, seed: int = 0):
    """MambaForCausalLM with the 130m layer shape, `layers` layers, a 1024-token vocabulary and
    seeded random weights, in eval mode."""
    import transformers  # optional: only this benchmark and the integration need it

    torch.manual_seed(seed)
    config = transformers.MambaConfig(vocab_size=VOCAB, hidden_size=768, state_size=16,
                                      num_hidden_layers=layers, expand=2, use_mambapy=False)
    return transformers.MambaForCausalLM(config).to(device=device, dtype=dtype).eval()


@contextlib.contextmanager
def use_path(model, path: str) -> Iterator[None]:
    """Runs the block with `model` on one path: transformers' own scan ('torch'), its mambapy
    scan, or mvscan's functions (mvscan.integrations.transformers.enable())."""
    if path not in ("torch", "mambapy", "mvscan"):
        raise ValueError(f"path must be 'torch', 'mambapy' or 'mvscan', got {path!r}")
    mixers = [layer.mixer for layer in model.backbone.layers]
    for mixer in mixers:
        mixer.use_mambapy = path == "mambapy"
    if path == "mvscan":
        integration.enable()
    try:
        yield
    finally:
        if path == "mvscan":
            integration.disable()
        for mixer in mixers:
            mixer.use_mambapy = False


def prefill_fn(model, batch: int, tokens: int, seed: int = 1) -> Callable[[], torch.Tensor]:
    """One forward pass over a (batch, tokens) prompt of random token ids: returns the logits."""
    device = next(model.parameters()).device
    ids = torch.randint(FIRST_ID, VOCAB, (batch, tokens),
                        generator=torch.Generator().manual_seed(seed)).to(device)

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model(ids).logits
    return run


def decode_fn(model, batch: int, new_tokens: int, seed: int = 2) -> Callable[[], torch.Tensor]:
    """Greedy generation of exactly `new_tokens` tokens after a 16-token random prompt (the
    prompt's prefill included): returns the token ids."""
    device = next(model.parameters()).device
    ids = torch.randint(FIRST_ID, VOCAB, (batch, DECODE_PROMPT),
                        generator=torch.Generator().manual_seed(seed)).to(device)
    mask = torch.ones_like(ids)

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens,
                                  min_new_tokens=new_tokens, do_sample=False)
    return run


def measure(model, rows: list[tuple[str, int, int, Callable[[], object]]], paths: tuple[str, ...],
            repeats: int) -> dict[tuple[str, int, int], dict[str, float]]:
    """For each (kind, batch, tokens, fn) row, the median seconds of fn on each path, the paths
    interleaved within every repeat after one warm-up run each."""
    device = next(model.parameters()).device
    times: dict[tuple[str, int, int], dict[str, list[float]]] = {}
    for kind, batch, tokens, fn in rows:
        per_path: dict[str, list[float]] = {p: [] for p in paths}
        for path in paths:
            with use_path(model, path):
                fn()  # warm-up
        for _ in range(repeats):
            for path in paths:
                with use_path(model, path):
                    per_path[path] += timed_runs(fn, 1, warmup=0, device=device)
        times[(kind, batch, tokens)] = per_path
    return {row: {p: statistics.median(v) for p, v in per_path.items()}
            for row, per_path in times.items()}


def run_mamba_benchmark(layers: int, repeats: int, device: torch.device) -> int:
    """Prints prefill and decode tokens/s of every path and mvscan's speedup over the faster
    transformers path, row by row."""
    try:
        model = build_model(layers, device=device)
    except ImportError:
        print("python -m mvscan.benchmark --model mamba needs transformers: "
              "pip install transformers")
        return 2
    paths = available_paths()
    rows = [("prefill", b, t, prefill_fn(model, b, t)) for b, t in PREFILL_ROWS]
    rows += [("decode", b, n, decode_fn(model, b, n)) for b, n in DECODE_ROWS]
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"cpu, {torch.get_num_threads()} threads")
    print(f"MambaForCausalLM, 130m layer shape x {layers} layers, random weights, fp32: {where}; "
          f"tokens/s, median of {repeats} interleaved runs")
    if "mambapy" not in paths:
        print("(mambapy is not installed: its column is left out; pip install mambapy)")
    header = f"{'row':34}" + "".join(f"{p:>12}" for p in paths) + f"{'mvscan vs best other':>22}"
    print(header)
    print("-" * len(header))
    medians = measure(model, rows, paths, repeats)
    for (kind, batch, tokens), secs in medians.items():
        label = (f"prefill {batch} x {tokens} tokens" if kind == "prefill"
                 else f"decode batch {batch}, {tokens} new tokens")
        tokens_done = batch * tokens
        rates = {p: tokens_done / s for p, s in secs.items()}
        best_other = min(s for p, s in secs.items() if p != "mvscan")
        print(f"{label:34}" + "".join(f"{rates[p]:12.0f}" for p in paths) +
              f"{best_other / secs['mvscan']:21.2f}x")
    return 0
