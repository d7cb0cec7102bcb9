"""mambavision: structure against the official release (parameter counts, shapes, stage
outputs), the mixer against a plain PyTorch statement of the official one, the mvscan path
against the reference path, and the training-time features."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

import mambavision
import mvscan
from helpers import max_err, rel_err
from mambavision.blocks import MambaVisionMixer, attention_indices
from mambavision.checkpoint import load_into

ALL = mambavision.list_models()


def small_model(name="mamba_vision_T", **kw):
    torch.manual_seed(0)
    return mambavision.create_model(name, **kw)


def test_list_models_has_all_released_variants():
    assert ALL == ["mamba_vision_T", "mamba_vision_T2", "mamba_vision_S", "mamba_vision_B",
                   "mamba_vision_B_21k", "mamba_vision_L", "mamba_vision_L_21k",
                   "mamba_vision_L2", "mamba_vision_L2_512_21k", "mamba_vision_L3_256_21k",
                   "mamba_vision_L3_512_21k"]


@pytest.mark.parametrize("name", ALL)
def test_parameter_count_and_output_shape(name):
    """Parameter counts equal the official ones; the forward's shapes, on the meta device."""
    with torch.device("meta"):
        model = mambavision.create_model(name)
        n = sum(p.numel() for p in model.parameters())
        assert round(n / 1e6, 2) == mambavision.VARIANTS[name].params_m
        res = model.pretrained_cfg["input_size"][1]
        assert model(torch.empty(2, 3, res, res)).shape == (2, 1000)
        feats = mambavision.create_model(name, features_only=True)(torch.empty(1, 3, res, res))
    dim = mambavision.VARIANTS[name].dim
    assert [tuple(f.shape) for f in feats] == [
        (1, dim * 2 ** i, res // (4 * 2 ** i), res // (4 * 2 ** i)) for i in range(4)]


def test_attention_block_placement():
    assert list(attention_indices(8)) == [4, 5, 6, 7]
    assert list(attention_indices(5)) == [3, 4]
    model = small_model()
    kinds = ["attn" if hasattr(b.mixer, "qkv") else "mamba" for b in model.levels[2].blocks]
    assert kinds == ["mamba"] * 4 + ["attn"] * 4


def test_tiny_forward_and_stage_outputs():
    model = small_model().eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert model(x).shape == (2, 1000)
        assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 640)
        feats = small_model(features_only=True).eval()(x)
    assert [tuple(f.shape[1:]) for f in feats] == [(80, 56, 56), (160, 28, 28), (320, 14, 14),
                                                  (640, 7, 7)]
    fmodel = small_model(features_only=True, out_indices=(1, 3))
    assert [i["num_chs"] for i in fmodel.feature_info] == [160, 640]
    assert [i["reduction"] for i in fmodel.feature_info] == [8, 32]


def test_forward_intermediates_equals_features_only_and_forward_features():
    """timm's API: every stage by default, the final map equal to forward_features, norm=True
    equal to what a features_only model returns for the same weights."""
    model = small_model().eval()
    fmodel = small_model(features_only=True).eval()
    load_into(fmodel, model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))
        assert [tuple(t.shape[1:]) for t in inter] == [(80, 16, 16), (160, 8, 8), (320, 4, 4),
                                                      (640, 2, 2)]
        raw = fmodel.forward_intermediates(x, intermediates_only=True)
        normed = fmodel.forward_intermediates(x, norm=True, intermediates_only=True)
        feats = fmodel(x)
        # A classifier has only its final BatchNorm: norm=True applies it to the last stage.
        cls_normed = model.forward_intermediates(x, norm=True, intermediates_only=True)
    for a, b in zip(raw, inter):
        assert torch.equal(a, b)
    for a, b in zip(normed, feats):
        assert torch.equal(a, b)
    for i, (a, b) in enumerate(zip(normed, raw)):
        assert torch.equal(a, fmodel.out_norms[str(i)](b)) and not torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(cls_normed[:3], inter[:3]))
    assert torch.equal(cls_normed[3], final)


@pytest.mark.parametrize("indices,stages", [(None, [0, 1, 2, 3]), (1, [3]), (2, [2, 3]),
                                            ([0, -1], [0, 3]), ((2, 0), [0, 2]), ([-3], [1])])
def test_forward_intermediates_indices(indices, stages):
    model = small_model().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        every = model.forward_intermediates(x, intermediates_only=True)
        some = model.forward_intermediates(x, indices=indices, intermediates_only=True)
    assert len(some) == len(stages)
    for got, i in zip(some, stages):
        assert torch.equal(got, every[i])


def test_forward_intermediates_stop_early():
    model = small_model().eval()
    ran = []
    model.levels[2].blocks[0].register_forward_hook(lambda *_: ran.append(2))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x, indices=[0, 1], stop_early=True)
        assert ran == []  # stage 2 never ran
        assert len(inter) == 2 and torch.equal(final, inter[1])  # stage 1, before downsample
        want = model.forward_intermediates(x, indices=[0, 1], intermediates_only=True)
        assert ran == [2]
    assert all(torch.equal(a, b) for a, b in zip(inter, want))


def test_forward_intermediates_bad_arguments():
    model = small_model()
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(ValueError, match="only 'NCHW'"):
        model.forward_intermediates(x, output_fmt="NHWC")
    with pytest.raises(ValueError, match="1 <= n <= 4; got 5"):
        model.forward_intermediates(x, indices=5)
    with pytest.raises(ValueError, match=r"must lie in \[-4, 4\)"):
        model.forward_intermediates(x, indices=[4])


def test_prune_intermediate_layers():
    model, whole = small_model().eval(), small_model().eval()
    assert model.prune_intermediate_layers([0, 1]) == [0, 1]
    assert len(model.levels) == 2 and model.levels[1].downsample is None
    assert [f["module"] for f in model.feature_info] == ["levels.0", "levels.1"]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        want = whole.forward_intermediates(x, indices=[0, 1], intermediates_only=True)
        assert all(torch.equal(a, b) for a, b in zip(inter, want))
        assert torch.equal(final, want[1]) and torch.equal(model.forward_features(x), want[1])
        assert model(x).shape == (2, 160)  # no head left: pooled stage-1 features
    fmodel = small_model(features_only=True, out_indices=(1, 3))
    assert fmodel.prune_intermediate_layers(3) == [1, 2, 3]
    assert fmodel.out_indices == (1, 3) and len(fmodel.levels) == 4
    fmodel.prune_intermediate_layers([1])
    assert fmodel.out_indices == (1,) and set(fmodel.out_norms) == {"1"}
    assert [tuple(f.shape) for f in fmodel(x)] == [(2, 160, 8, 8)]


def official_mixer(m: MambaVisionMixer, hidden_states: torch.Tensor) -> torch.Tensor:
    """The official mixer's forward, stated with F.conv1d and the reference scan."""
    _, seqlen, _ = hidden_states.shape
    xz = m.in_proj(hidden_states).permute(0, 2, 1)
    x, z = xz.chunk(2, dim=1)
    A = -torch.exp(m.A_log.float())
    x = F.silu(F.conv1d(x, m.conv1d_x.weight, m.conv1d_x.bias, padding="same",
                        groups=m.d_inner // 2))
    z = F.silu(F.conv1d(z, m.conv1d_z.weight, m.conv1d_z.bias, padding="same",
                        groups=m.d_inner // 2))
    x_dbl = m.x_proj(x.permute(0, 2, 1).reshape(-1, m.d_inner // 2))
    dt, B, C = torch.split(x_dbl, [m.dt_rank, m.d_state, m.d_state], dim=-1)
    dt = m.dt_proj(dt).reshape(-1, seqlen, m.d_inner // 2).permute(0, 2, 1)
    B = B.reshape(-1, seqlen, m.d_state).permute(0, 2, 1).contiguous()
    C = C.reshape(-1, seqlen, m.d_state).permute(0, 2, 1).contiguous()
    y = mvscan.selective_scan_ref(x, dt, A, B, C, m.D.float(), z=None,
                                  delta_bias=m.dt_proj.bias.float(), delta_softplus=True)
    return m.out_proj(torch.cat([y, z], dim=1).permute(0, 2, 1))


@pytest.mark.parametrize("d_model,L", [(160, 196), (320, 49), (96, 64)])
def test_mixer_equals_official_statement(d_model, L):
    torch.manual_seed(1)
    m = MambaVisionMixer(d_model)
    for p in m.parameters():  # random weights everywhere, not the init
        p.data = torch.randn_like(p) * (0.3 if p.dim() > 1 else 0.5)
    m.A_log.data = torch.log(torch.rand_like(m.A_log) * 4 + 0.5)
    h = torch.randn(3, L, d_model, requires_grad=True)
    ours, ref = m(h), official_mixer(m, h)
    # float32 against float32 in another order of operations: compare at float32 round-off.
    assert rel_err(ours, ref) < 1e-5 and max_err(ours, ref) < 1e-4
    g = torch.randn_like(ours)
    names = ["h"] + [n for n, _ in m.named_parameters()]
    grads = torch.autograd.grad(ours, [h] + list(m.parameters()), g)
    ref_grads = torch.autograd.grad(ref, [h] + list(m.parameters()), g)
    for name, a, b in zip(names, grads, ref_grads):
        assert rel_err(a, b) < 1e-4 and max_err(a, b) < 1e-3, name


def copy_weights(dst, src):
    dst.load_state_dict(src.state_dict())
    return dst


@pytest.mark.parametrize("size", [(224, 224), (100, 130)])
def test_mvscan_path_equals_reference_path(size):
    model = small_model().eval()
    ref = copy_weights(small_model(scan_backend="reference"), model).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        ours, want = model(x), ref(x)
    assert rel_err(ours, want) < 1e-5 and max_err(ours, want) < 1e-4


def test_channels_last_and_autocast():
    model = small_model().eval()
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        y = model(x)
        y_cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(y_cl, y, rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y_bf16 = model(x)
    assert y_bf16.dtype == torch.bfloat16
    assert F.cosine_similarity(y_bf16.float().flatten(), y.flatten(), dim=0) > 0.99


def test_training_step_lowers_loss():
    torch.manual_seed(0)
    model = mambavision.create_model("mamba_vision_T", num_classes=5, drop_path_rate=0.0)
    x, target = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 3])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss = F.cross_entropy(model(x), target)
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def classification_loss(model, x):
    """Cross-entropy on fixed targets. (A plain sum of the logits would be a degenerate test:
    through the final train-mode BatchNorm and global pooling its gradient is exactly zero.)"""
    return F.cross_entropy(model(x), torch.arange(x.shape[0]) % 7)


def test_grad_checkpointing_gives_the_same_gradients():
    model = small_model(drop_path_rate=0.0)
    x = torch.randn(2, 3, 64, 64)
    classification_loss(model, x).backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    classification_loss(model, x).backward()
    for n, p in model.named_parameters():
        assert rel_err(p.grad, want[n]) < 1e-5, n


def test_no_weight_decay_and_reset_classifier():
    model = small_model()
    skip = model.no_weight_decay()
    assert "levels.2.blocks.0.mixer.A_log" in skip and "levels.2.blocks.0.mixer.D" in skip
    assert "levels.2.blocks.0.mixer.in_proj.weight" not in skip
    model.reset_classifier(10)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 640)


def test_preprocessing_config():
    with torch.device("meta"):
        cfg = mambavision.create_model("mamba_vision_L2_512_21k").pretrained_cfg
    assert cfg["input_size"] == (3, 512, 512) and cfg["crop_mode"] == "squash"
    assert cfg["crop_pct"] == 0.93 and cfg["interpolation"] == "bicubic"
    assert small_model().pretrained_cfg["mean"] == (0.485, 0.456, 0.406)


def test_pretrained_cfg_names_the_checkpoint_file_as_timm_does():
    with torch.device("meta"):
        cfgs = {name: mambavision.create_model(name).pretrained_cfg for name in ALL}
    assert cfgs["mamba_vision_T"]["file"] == "mambavision_tiny_1k.pth.tar"
    assert cfgs["mamba_vision_L3_512_21k"]["file"] == "mambavision_L3_21k_740m_512.pth.tar"
    assert all(cfg["file"].endswith(".pth.tar") and "checkpoint_file" not in cfg
               for cfg in cfgs.values())


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown model 'mamba_vision_X'; available: mamba_vision_T"):
        mambavision.create_model("mamba_vision_X")
    with pytest.raises(ValueError, match="pretrained=True needs checkpoint_path.*never downloads"):
        mambavision.create_model("mamba_vision_T", pretrained=True)
    with pytest.raises(ValueError, match="scan_backend must be 'mvscan' or 'reference'"):
        mambavision.create_model("mamba_vision_T", scan_backend="cuda")
    with pytest.raises(ValueError, match="out_indices must be"):
        mambavision.create_model("mamba_vision_T", features_only=True, out_indices=(4,))


def test_compile_fullgraph_forward_backward():
    model = small_model(drop_path_rate=0.0).eval()  # running BN statistics: a fixed function
    x = torch.randn(2, 3, 64, 64)
    torch._dynamo.reset()
    loss_c = classification_loss(torch.compile(model, fullgraph=True), x)
    loss_c.backward()
    grads_c = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    loss_e = classification_loss(model, x)
    loss_e.backward()
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-6)
    # Inductor fuses and reorders reductions: compare gradients at float32 round-off, by norm.
    errs = {n: rel_err(grads_c[n], p.grad) for n, p in model.named_parameters()}
    worst = max(errs, key=errs.get)
    assert errs[worst] < 1e-4, f"{worst}: {errs[worst]:.2e}"
