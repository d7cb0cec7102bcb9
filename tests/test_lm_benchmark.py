"""mvscan.lm_benchmark (what `python -m mvscan.benchmark --model mamba` runs): the paths it
switches between leave the model as they found it, and a tiny run measures every path."""

import pytest
import torch

import mvscan.integrations.transformers as integration
from mvscan import lm_benchmark

pytest.importorskip("transformers")


def test_paths_end_with_mvscan_and_start_with_transformers_own():
    paths = lm_benchmark.available_paths()
    assert paths[0] == "torch" and paths[-1] == "mvscan"


def test_use_path_switches_and_restores():
    model = lm_benchmark.build_model(layers=1)
    mixer = model.backbone.layers[0].mixer
    with lm_benchmark.use_path(model, "mvscan"):
        assert integration.is_enabled() and not mixer.use_mambapy
    with lm_benchmark.use_path(model, "mambapy"):
        assert mixer.use_mambapy and not integration.is_enabled()
    assert not integration.is_enabled() and not mixer.use_mambapy
    with pytest.raises(ValueError, match="path must be 'torch', 'mambapy' or 'mvscan'"):
        with lm_benchmark.use_path(model, "cuda"):
            pass


def test_tiny_measurement_times_every_path_on_the_same_outputs():
    model = lm_benchmark.build_model(layers=1)
    prefill = lm_benchmark.prefill_fn(model, 1, 40)
    decode = lm_benchmark.decode_fn(model, 2, 3)
    paths = lm_benchmark.available_paths()
    medians = lm_benchmark.measure(model, [("prefill", 1, 40, prefill), ("decode", 2, 3, decode)],
                                   paths, repeats=1)
    assert set(medians) == {("prefill", 1, 40), ("decode", 2, 3)}
    assert all(set(v) == set(paths) and min(v.values()) > 0 for v in medians.values())
    outs = {}
    for path in paths:
        with lm_benchmark.use_path(model, path):
            outs[path] = (prefill(), decode())
    for path in paths[1:]:
        torch.testing.assert_close(outs[path][0], outs["torch"][0], rtol=1e-4, atol=1e-4)
        assert torch.equal(outs[path][1], outs["torch"][1]), path
