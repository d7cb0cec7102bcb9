"""CPU inference of MambaVision-T (batch 8, fp32, 224x224): the mvscan path vs the
reference-scan path (F.conv1d + the pure-PyTorch scan) of the same weights, in one run."""

from __future__ import annotations

import pytest
import torch

import mambavision

BACKENDS = ["reference", "mvscan"]  # reference first: the ratio needs it


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    ours = mambavision.create_model("mamba_vision_T").eval()
    ref = mambavision.create_model("mamba_vision_T", scan_backend="reference").eval()
    ref.load_state_dict(ours.state_dict())
    return {"mvscan": ours, "reference": ref}


@pytest.mark.parametrize("backend", BACKENDS)
def test_mambavision_t_inference_cpu(benchmark, record_ratio, models, backend):
    batch = 8
    x = torch.randn(batch, 3, 224, 224)
    model = models[backend]

    def run():
        with torch.inference_mode():
            return model(x)

    group = f"mambavision_T cpu fp32 inference b{batch}"
    benchmark.group = group
    out = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    assert out.shape == (batch, 1000)
    record_ratio(group, backend)
    if not benchmark.disabled:
        benchmark.extra_info["images_per_s"] = round(batch / benchmark.stats.stats.median, 1)
