"""benchmarks/gpu_cost_model.py end to end on CPU (its --quick cases: MambaVision-T stage 4, both
layouts): the JSON schema the issue fixed, sane numbers, and coalescing facts the counters must
see in the kernels as they are (the conv writes channels-contiguous output in MambaVision's
layout: every store request full)."""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
import gpu_cost_model  # noqa: E402

OPS = {"selective_scan_fwd", "selective_scan_bwd", "depthwise_conv1d_fwd", "depthwise_conv1d_bwd"}
FIELDS = {"op": str, "shape": str, "layout": str, "bytes": int, "floor_us": float,
          "predicted_us": float, "limiter": str, "global_load_efficiency": float,
          "global_store_efficiency": float, "smem_conflict_ways": float}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("cost") / "model.json"
    assert gpu_cost_model.main(["--quick", "--json", str(path)]) == 0
    with open(path) as f:
        return json.load(f)


def test_schema(report):
    assert report["predicted"] is True
    kernels = report["kernels"]
    assert {k["op"] for k in kernels} == OPS
    assert {k["layout"] for k in kernels} == {"mambavision", "contiguous"}
    for k in kernels:
        for name, kind in FIELDS.items():
            assert isinstance(k[name], kind), (name, k)
        assert k["shape"].startswith("128x320x49 ") and k["shape"].endswith(" bf16")


def test_numbers_are_sane(report):
    for k in report["kernels"]:
        assert k["bytes"] > 0 and k["floor_us"] > 0
        assert k["predicted_us"] == max(k["components_us"].values()) or \
            abs(k["predicted_us"] - max(k["components_us"].values())) < 1e-3
        assert k["limiter"] in k["components_us"]
        assert 0 < k["global_load_efficiency"] <= 1 and 0 < k["global_store_efficiency"] <= 1
        assert k["smem_conflict_ways"] >= 1
        assert k["blocks_sampled"] >= 1 and k["blocks"] >= k["blocks_sampled"]


def test_floor_is_bytes_over_bandwidth(report):
    bw = gpu_cost_model.DEVICES["h100"].hbm_gb_s * 1e3  # bytes per microsecond
    conv = next(k for k in report["kernels"]
                if k["op"] == "depthwise_conv1d_fwd" and k["layout"] == "contiguous")
    # x and out: 128 x 320 x 49 bf16 each; the weight: 320 x 3 bf16.
    assert conv["bytes"] == 2 * (2 * 128 * 320 * 49) + 2 * 320 * 3
    assert conv["floor_us"] == pytest.approx(conv["bytes"] / bw)


def test_conv_stores_coalesce_in_mambavision_layout(report):
    rows = [k for k in report["kernels"]
            if k["op"] == "depthwise_conv1d_fwd" and k["layout"] == "mambavision"]
    assert rows
    for k in rows:
        assert k["global_store_efficiency"] == 1.0, k
