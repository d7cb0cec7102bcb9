"""mvscan.integrations.transformers: with enable(), transformers' Mamba and FalconMamba (tiny
random configs) give the logits, greedy tokens and training gradients of transformers' own
PyTorch path, through mvscan's functions (counted); disable() restores transformers' own."""

from __future__ import annotations

import pytest
import torch

import mvscan.integrations.transformers as integration

transformers = pytest.importorskip("transformers")  # in the test extra; see pyproject.toml

CONFIGS = {
    "mamba": lambda: transformers.MambaConfig(
        vocab_size=64, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2, conv_kernel=4,
        time_step_rank=4, use_mambapy=False),
    "falcon_mamba": lambda: transformers.FalconMambaConfig(
        vocab_size=64, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2, conv_kernel=4,
        time_step_rank=4, use_mambapy=False),
}
MODEL_CLASSES = {"mamba": "MambaForCausalLM", "falcon_mamba": "FalconMambaForCausalLM"}

# Hybrid models whose Mamba layers call the same functions: attention and (Jamba) MoE layers
# between them; Zamba splits each mixer into 2 heads (one scan per head).
HYBRIDS = {
    "jamba": lambda: transformers.JambaForCausalLM(transformers.JambaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, num_experts=2, num_experts_per_tok=1,
        expert_layer_period=2, expert_layer_offset=1, attn_layer_period=2, attn_layer_offset=1,
        mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, mamba_dt_rank=4)),
    "zamba": lambda: transformers.ZambaForCausalLM(transformers.ZambaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=6,
        attn_layer_period=3, attn_layer_offset=2, num_attention_heads=4, num_key_value_heads=4,
        attention_hidden_size=64, attention_head_dim=16, mamba_d_state=8, mamba_d_conv=4,
        mamba_expand=2, mamba_dt_rank=4, n_mamba_heads=2)),
}


def make_model(name: str):
    torch.manual_seed(0)
    model = getattr(transformers, MODEL_CLASSES[name])(CONFIGS[name]())
    with torch.no_grad():  # D and the conv bias away from their initial values
        for layer in model.backbone.layers:
            layer.mixer.D.normal_()
            layer.mixer.conv1d.bias.normal_()
    return model


@pytest.fixture
def calls(monkeypatch):
    """Counts the calls into mvscan's functions made through the integration."""
    counts: dict[str, int] = {}
    for name in ("selective_scan", "selective_state_update", "causal_conv1d_fn",
                 "causal_conv1d_update", "mamba_inner_fn"):
        original = getattr(integration, name)

        def counting(*args, _name=name, _original=original, **kwargs):
            counts[_name] = counts.get(_name, 0) + 1
            return _original(*args, **kwargs)
        monkeypatch.setattr(integration, name, counting)
    yield counts
    integration.disable()


def run_both(fn):
    """fn() under transformers' own functions, then with mvscan enabled."""
    integration.disable()
    theirs = fn()
    integration.enable()
    try:
        ours = fn()
    finally:
        integration.disable()
    return theirs, ours


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_and_greedy_generation(name, calls):
    model = make_model(name).eval()
    ids = torch.randint(0, 64, (2, 23), generator=torch.Generator().manual_seed(1))

    def logits():
        with torch.no_grad():
            return model(ids).logits

    theirs, ours = run_both(logits)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    assert calls.get("selective_scan") == 2 and calls.get("causal_conv1d_fn") == 2

    def generate():
        with torch.no_grad():
            return model.generate(ids, max_new_tokens=12, do_sample=False)

    theirs, ours = run_both(generate)
    assert torch.equal(ours, theirs)
    assert calls.get("selective_state_update", 0) >= 2 * 11  # every layer, every new token
    assert calls.get("causal_conv1d_update", 0) >= 2 * 11


def assert_same_training_gradients(model, length: int = 30) -> None:
    """The training loss and every parameter's gradient equal with and without mvscan."""
    model.train()
    ids = torch.randint(0, 64, (2, length), generator=torch.Generator().manual_seed(2))
    params = [p for p in model.parameters() if p.requires_grad]

    def loss_and_grads():
        loss = model(ids, labels=ids).loss
        return loss.detach(), torch.autograd.grad(loss, params, allow_unused=True)

    (l1, g1), (l2, g2) = run_both(loss_and_grads)
    torch.testing.assert_close(l2, l1, rtol=1e-5, atol=1e-6)
    for p, a, b in zip(params, g1, g2):
        if a is None:
            assert b is None
            continue
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_training_gradients(name, calls):
    assert_same_training_gradients(make_model(name))
    if name == "mamba":
        assert calls.get("mamba_inner_fn") == 2  # the fused path, one node per layer
    else:
        assert "mamba_inner_fn" not in calls and calls.get("selective_scan") == 2


@pytest.mark.parametrize("name", list(HYBRIDS))
def test_hybrid_models(name, calls):
    torch.manual_seed(0)
    model = HYBRIDS[name]().eval()
    ids = torch.randint(0, 64, (2, 19), generator=torch.Generator().manual_seed(1))

    def logits_and_tokens():
        with torch.no_grad():
            return model(ids).logits, model.generate(ids, max_new_tokens=6, do_sample=False)

    (l1, t1), (l2, t2) = run_both(logits_and_tokens)
    torch.testing.assert_close(l2, l1, rtol=1e-4, atol=1e-5)
    assert torch.equal(t2, t1)
    assert calls.get("selective_scan", 0) >= 2 and calls.get("selective_state_update", 0) >= 5


@pytest.mark.parametrize("name", list(HYBRIDS))
def test_hybrid_training_gradients(name, calls):
    torch.manual_seed(0)
    assert_same_training_gradients(HYBRIDS[name]())
    # Jamba's config has one Mamba layer (the other is attention); Zamba's six, two heads each.
    assert calls.get("selective_scan", 0) + calls.get("mamba_inner_fn", 0) >= 1


def test_enable_disable_restore():
    import transformers.models.mamba.modeling_mamba as mm
    original = mm.mamba_selective_scan
    integration.enable()
    integration.enable()  # idempotent: disable() must still restore transformers' own
    assert mm.mamba_selective_scan is integration.REPLACEMENTS["mamba_selective_scan"]
    assert integration.is_enabled()
    integration.disable()
    assert mm.mamba_selective_scan is original and not integration.is_enabled()


def test_missing_function_is_a_clear_error(monkeypatch):
    import transformers.models.jamba.modeling_jamba as jm
    monkeypatch.delattr(jm, "causal_conv1d_update")
    with pytest.raises(RuntimeError, match="jamba has no causal_conv1d_update"):
        integration.enable()
    assert not integration.is_enabled()
