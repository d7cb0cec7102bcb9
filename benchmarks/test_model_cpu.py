"""Model images/sec: MambaVision variants through the mvscan and the reference-scan paths of
the same weights, beside same-size timm peers (convnext_tiny, swin_tiny) when timm is installed.
CPU rows: fp32 inference at batch 1 and 8, then MambaVision-T and convnext_tiny through
mambavision.optimize_for_inference (compiled with freezing) in fp32 and bf16, in the same groups
so their speed shows against the eager fp32 reference. CUDA rows (skipped without a GPU): fp16
autocast, channels_last, batch 256, as in the paper's throughput setting.

With timing disabled (the test suite's smoke run) the optimized rows run uncompiled: compiling
takes 30-40 s per row."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import mambavision
from mambavision.inference import InferenceModel
from mvscan.timing import synced

VARIANTS = ["mamba_vision_T", "mamba_vision_T2", "mamba_vision_S"]
PEERS = ["convnext_tiny", "swin_tiny_patch4_window7_224"]
HAVE_TIMM = importlib.util.find_spec("timm") is not None
GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

_cache: dict[tuple, torch.nn.Module] = {}


def mambavision_model(name: str, backend: str, device: str) -> torch.nn.Module:
    """Both paths of a variant share the weights of the first one built."""
    key = (name, backend, device)
    if key not in _cache:
        torch.manual_seed(0)
        model = mambavision.create_model(name, scan_backend=backend)
        twin = next((m for (n, _, d), m in _cache.items() if n == name and d == device), None)
        if twin is not None:
            model.load_state_dict(twin.state_dict())
        _cache[key] = model.to(device).eval()
    return _cache[key]


def peer_model(name: str, device: str) -> torch.nn.Module:
    import timm

    return timm.create_model(name, pretrained=False).to(device).eval()


def optimized(benchmark, model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    return mambavision.optimize_for_inference(model, dtype=dtype,
                                              compile=not benchmark.disabled)


def measure(benchmark, record_ratio, model, group, backend, batch, device, dtype,
            channels_last=False):
    x = torch.randn(batch, 3, 224, 224, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    if isinstance(model, InferenceModel):  # autocast inside
        dtype = torch.float32
        model(x)  # the first call compiles: not timed

    def forward():
        with torch.inference_mode(), torch.autocast(device, dtype=dtype,
                                                    enabled=dtype != torch.float32):
            return model(x)

    benchmark.group = group
    out = benchmark.pedantic(synced(forward, device), rounds=3 if device == "cpu" else 20,
                             warmup_rounds=1)
    assert out.shape == (batch, 1000)
    record_ratio(group, backend)
    if not benchmark.disabled:
        benchmark.extra_info["images_per_s"] = round(batch / benchmark.stats.stats.median, 1)


@pytest.mark.parametrize("backend", ["reference", "mvscan"])  # reference first: the ratio
@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("batch", [1, 8])
def test_mambavision_cpu(benchmark, record_ratio, batch, name, backend):
    measure(benchmark, record_ratio, mambavision_model(name, backend, "cpu"),
            f"{name} cpu fp32 inference b{batch}", backend, batch, "cpu", torch.float32)


@pytest.mark.skipif(not HAVE_TIMM, reason="timm peers need timm")
@pytest.mark.parametrize("name", PEERS)
@pytest.mark.parametrize("batch", [1, 8])
def test_peer_cpu(benchmark, record_ratio, batch, name):
    measure(benchmark, record_ratio, peer_model(name, "cpu"), f"peers cpu fp32 inference b{batch}",
            name, batch, "cpu", torch.float32)


OPT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@pytest.mark.parametrize("dtype", OPT_DTYPES)
@pytest.mark.parametrize("batch", [1, 8])
def test_mambavision_optimized_cpu(benchmark, record_ratio, batch, dtype):
    name = "mamba_vision_T"
    model = optimized(benchmark, mambavision_model(name, "mvscan", "cpu"), OPT_DTYPES[dtype])
    measure(benchmark, record_ratio, model, f"{name} cpu fp32 inference b{batch}",
            f"opt-{dtype}", batch, "cpu", torch.float32)


@pytest.mark.skipif(not HAVE_TIMM, reason="timm peers need timm")
@pytest.mark.parametrize("dtype", OPT_DTYPES)
@pytest.mark.parametrize("batch", [1, 8])
def test_peer_optimized_cpu(benchmark, record_ratio, batch, dtype):
    model = optimized(benchmark, peer_model("convnext_tiny", "cpu"), OPT_DTYPES[dtype])
    measure(benchmark, record_ratio, model, f"peers cpu fp32 inference b{batch}",
            f"convnext_tiny-opt-{dtype}", batch, "cpu", torch.float32)


@GPU
@pytest.mark.parametrize("backend", ["reference", "mvscan"])
@pytest.mark.parametrize("name", VARIANTS)
def test_mambavision_cuda(benchmark, record_ratio, name, backend):
    measure(benchmark, record_ratio, mambavision_model(name, backend, "cuda"),
            f"{name} cuda fp16 channels_last inference b256", backend, 256, "cuda",
            torch.float16, channels_last=True)


@GPU
@pytest.mark.skipif(not HAVE_TIMM, reason="timm peers need timm")
@pytest.mark.parametrize("name", PEERS)
def test_peer_cuda(benchmark, record_ratio, name):
    measure(benchmark, record_ratio, peer_model(name, "cuda"),
            "peers cuda fp16 channels_last inference b256", name, 256, "cuda", torch.float16,
            channels_last=True)
