"""mambavision.optimize_for_inference computes the model's function: each fold alone (random
weights, random BatchNorm statistics, random layer scales), whole models eager (T and B, B for
its layer scales), and T and B compiled with inductor freezing; bf16's error stays small; the caller's
model is untouched; bad arguments are refused. The CLI's --optimize flags: tests/test_cli.py
(benchmark, predict) and tests/test_train.py (validate); the compiled tests share one shape
(T, batch 1, 224 px) where they can, so that inductor's cache compiles it once."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mambavision
from helpers import rel_err
from mambavision.blocks import Block, ConvBlock
from mambavision.inference import (InferenceModel, fold_batchnorm, fold_model, fold_scale,
                                   optimize_for_inference)

FP32_TOL = 1e-5  # relative norm error of the folded fp32 model (the issue allows 1e-4)


def randomize_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine parameters, and layer scales far from 1, so that
    a fold that drops or misplaces any of them shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                for t, lo, hi in ((m.running_mean, -0.5, 0.5), (m.running_var, 0.3, 2.0),
                                  (m.weight, 0.5, 1.5), (m.bias, -0.3, 0.3)):
                    if t is not None:  # weight and bias: only an affine BatchNorm has them
                        t.copy_(torch.rand(t.shape, generator=gen) * (hi - lo) + lo)
        for name, p in model.named_parameters():
            if "gamma" in name:
                p.copy_(torch.rand(p.shape, generator=gen) + 0.2)
    return model


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("affine", [False, True])
def test_fold_batchnorm(bias, affine):
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, 3, 2, 1, bias=bias)
    bn = randomize_stats(nn.Sequential(nn.BatchNorm2d(7, eps=1e-4, affine=affine)))[0].eval()
    x = torch.randn(2, 5, 11, 9)
    fused = fold_batchnorm(conv, bn)
    with torch.no_grad():
        assert rel_err(fused(x), bn(conv(x))) < 1e-6
    assert (conv.bias is None) == (not bias)  # the original conv is untouched
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(conv, bn.train())


@pytest.mark.parametrize("layer", [nn.Linear(6, 4), nn.Linear(6, 4, bias=False),
                                   nn.Conv2d(3, 4, 3, padding=1)])
def test_fold_scale(layer):
    torch.manual_seed(0)
    gamma = torch.rand(4) + 0.2
    x = torch.randn(2, 6) if isinstance(layer, nn.Linear) else torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        want = layer(x) * gamma.view(1, -1, *([1] * (x.dim() - 2)))
        fold_scale(layer, gamma)
        assert rel_err(layer(x), want) < 1e-6


def test_fold_conv_block_with_layer_scale():
    torch.manual_seed(0)
    block = randomize_stats(ConvBlock(8, layer_scale=1e-5)).eval()
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        want = block(x)
        fold_model(block)
        assert not hasattr(block, "gamma") and isinstance(block.norm2, nn.Identity)
        assert rel_err(block(x), want) < 1e-6


@pytest.mark.parametrize("attention", [False, True])
def test_fold_block_layer_scale(attention):
    torch.manual_seed(0)
    block = randomize_stats(Block(32, 4, attention, layer_scale=1e-5)).eval()
    x = torch.randn(2, 49, 32)
    with torch.no_grad():
        want = block(x)
        fold_model(block)
        assert not block.layer_scale and not hasattr(block, "gamma_1")
        assert rel_err(block(x), want) < 1e-6


@pytest.mark.parametrize("name", ["mamba_vision_T", "mamba_vision_B"])
def test_folded_model_is_the_same_function(name):
    """T (no layer scale) and B (layer scale 1e-5, randomized here), eager, batch 1 at 224."""
    torch.manual_seed(0)
    model = randomize_stats(mambavision.create_model(name)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 224, 224)
    opt = optimize_for_inference(model, compile=False)
    with torch.no_grad():
        want = model(x)
    got = opt(x)
    assert rel_err(got, want) < FP32_TOL
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in opt.model.modules())
    assert n_bn == 1  # only the head's norm, which follows no conv
    state = model.state_dict()  # the caller's model is untouched
    assert state.keys() == before.keys() and all(torch.equal(state[k], before[k]) for k in state)


def test_training_mode_model_is_copied_not_changed():
    model = mambavision.create_model("mamba_vision_T").train()
    opt = optimize_for_inference(model, compile=False)
    assert model.training and not opt.model.training
    assert isinstance(model.patch_embed.conv_down[1], nn.BatchNorm2d)


def test_bf16_error_is_small():
    torch.manual_seed(0)
    model = mambavision.create_model("mamba_vision_T").eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        want = model(x)
    got = optimize_for_inference(model, dtype=torch.bfloat16, compile=False)(x)
    assert got.dtype == torch.bfloat16
    assert rel_err(got.float(), want) < 3e-2


def test_bad_arguments():
    model = mambavision.create_model("mamba_vision_T")
    with pytest.raises(ValueError, match="dtype must be"):
        optimize_for_inference(model, dtype=torch.float64)
    with pytest.raises(ValueError, match="needs a CUDA model"):
        optimize_for_inference(model, dtype=torch.float16)


def test_compiled_frozen_model_is_the_same_function(monkeypatch):
    """torch.compile(fullgraph=True) with freezing: inductor freezes the graph (the weights
    become constants), no graph break (fullgraph would raise), the same logits, and no
    recompilation whether the caller uses no_grad, inference_mode or neither."""
    import torch._inductor.freezing
    from torch._dynamo.utils import counters

    freezes = []
    freeze = torch._inductor.freezing.freeze
    monkeypatch.setattr(torch._inductor.freezing, "freeze",
                        lambda *a, **k: freezes.append(1) or freeze(*a, **k))
    torch.manual_seed(0)
    model = randomize_stats(mambavision.create_model("mamba_vision_T")).eval()
    opt = optimize_for_inference(model)
    assert isinstance(opt, InferenceModel) and opt.compiled
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        want = model(x)
    counters.clear()
    assert rel_err(opt(x), want) < FP32_TOL
    with torch.no_grad():
        opt(x)
    with torch.inference_mode():
        assert rel_err(opt(x), want) < FP32_TOL
    assert counters["stats"]["unique_graphs"] == 1 and len(freezes) == 1


def test_compiled_larger_variant_is_the_same_function():
    """B (layer scale folded into out_proj / proj / fc2 / conv2), compiled and frozen: the same
    logits as the eager model in fp32."""
    torch.manual_seed(0)
    model = randomize_stats(mambavision.create_model("mamba_vision_B")).eval()
    opt = optimize_for_inference(model)
    assert opt.compiled
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        want = model(x)
    assert rel_err(opt(x), want) < FP32_TOL
