"""Hugging Face transformers' Mamba-1 models on mvscan's kernels.

``enable()`` points the kernel functions that transformers' Mamba, FalconMamba, Jamba and Zamba
modeling files call (module globals, looked up at call time) at mvscan's: the scan, the causal
conv, their decode steps and, in training, the fused mixer. ``disable()`` puts transformers' own
back. Tested with transformers 5.24.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

from torch import Tensor

from ..causal_conv1d import causal_conv1d_fn
from ..decode import causal_conv1d_update, selective_state_update
from ..mamba_inner import mamba_inner_fn
from ..ops import selective_scan

# The modeling files and the names each calls. FalconMamba keeps transformers' mamba_inner_fn
# (which returns None, so its mixer takes the unfused path through mvscan's scan and conv): its
# PyTorch path normalises dt over dt_rank before dt_proj, mamba_ssm's fused kernel (and mvscan's)
# over d_inner after it, so the fused path would change the model.
MODELS: dict[str, tuple[str, ...]] = {
    "mamba": ("mamba_selective_scan", "mamba_selective_state_update", "causal_conv1d_fn",
              "causal_conv1d_update", "mamba_inner_fn"),
    "falcon_mamba": ("mamba_selective_scan", "mamba_selective_state_update", "causal_conv1d_fn",
                     "causal_conv1d_update"),
    "jamba": ("mamba_selective_scan", "mamba_selective_state_update", "causal_conv1d_fn",
              "causal_conv1d_update", "mamba_inner_fn"),
    "zamba": ("mamba_selective_scan", "mamba_selective_state_update", "causal_conv1d_fn",
              "causal_conv1d_update"),
}

_saved: dict[tuple[str, str], Callable] = {}


def _parameters(fn: Callable) -> frozenset[str]:
    return frozenset(inspect.signature(fn).parameters)


# mvscan's parameter names, read once: transformers passes options mvscan has no use for
# (use_mambapy, use_associative_scan, ...), dropped by _keywords.
_PARAMETERS = {fn.__name__: _parameters(fn) for fn in (
    selective_scan, selective_state_update, causal_conv1d_fn, causal_conv1d_update,
    mamba_inner_fn)}


def _keywords(name: str, kwargs: dict) -> dict:
    """kwargs restricted to the parameters of mvscan's function `name`."""
    return {k: v for k, v in kwargs.items() if k in _PARAMETERS[name]}


def _selective_scan(hidden_states: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
                    D: Tensor | None = None, z: Tensor | None = None,
                    delta_bias: Tensor | None = None, delta_softplus: bool = False,
                    return_last_state: bool = False, **kwargs):
    return selective_scan(hidden_states, dt, A, B, C, D, z, delta_bias, delta_softplus,
                          return_last_state, **_keywords("selective_scan", kwargs))


def _selective_state_update(state: Tensor, hidden_states: Tensor, dt: Tensor, A: Tensor,
                            B: Tensor, C: Tensor, D: Tensor | None = None,
                            dt_bias: Tensor | None = None, dt_softplus: bool = False,
                            z: Tensor | None = None, **kwargs) -> Tensor:
    return selective_state_update(state, hidden_states, dt, A, B, C, D, z=z, dt_bias=dt_bias,
                                  dt_softplus=dt_softplus,
                                  **_keywords("selective_state_update", kwargs))


def _causal_conv1d_fn(hidden_states: Tensor, weight: Tensor, bias: Tensor | None = None,
                      activation: str | None = None, **kwargs):
    return causal_conv1d_fn(hidden_states, weight, bias, activation=activation,
                            **_keywords("causal_conv1d_fn", kwargs))


def _causal_conv1d_update(hidden_states: Tensor, conv_state: Tensor, weight: Tensor,
                          bias: Tensor | None = None, activation: str | None = None,
                          **kwargs) -> Tensor:
    return causal_conv1d_update(hidden_states, conv_state, weight, bias, activation,
                                **_keywords("causal_conv1d_update", kwargs))


def _mamba_inner_fn(*args, **kwargs) -> Tensor:
    return mamba_inner_fn(*args, **_keywords("mamba_inner_fn", kwargs))


REPLACEMENTS: dict[str, Callable] = {
    "mamba_selective_scan": _selective_scan,
    "mamba_selective_state_update": _selective_state_update,
    "causal_conv1d_fn": _causal_conv1d_fn,
    "causal_conv1d_update": _causal_conv1d_update,
    "mamba_inner_fn": _mamba_inner_fn,
}


def _modeling_module(model: str):
    try:
        return importlib.import_module(f"transformers.models.{model}.modeling_{model}")
    except ImportError as exc:
        raise ImportError("mvscan.integrations.transformers needs Hugging Face transformers "
                          f"(pip install transformers); importing its {model} model failed: "
                          f"{exc}") from exc


def enable() -> None:
    """Routes transformers' Mamba-1 models (Mamba, FalconMamba, Jamba, Zamba) through mvscan's
    kernels, on every device. Idempotent; raises ImportError without transformers and
    RuntimeError when a modeling file no longer has a function this patches."""
    modules = {model: _modeling_module(model) for model in MODELS}
    for model, names in MODELS.items():
        missing = [n for n in names if not callable(getattr(modules[model], n, None))]
        if missing:
            raise RuntimeError(
                f"mvscan.integrations.transformers: transformers.models.{model} has no "
                f"{', '.join(missing)} any more (this transformers version changed its kernel "
                "functions); nothing was patched")
    for model, names in MODELS.items():
        for name in names:
            key = (model, name)
            if key not in _saved:
                _saved[key] = getattr(modules[model], name)
            setattr(modules[model], name, REPLACEMENTS[name])


def disable() -> None:
    """Restores transformers' own functions (a no-op when enable() was not called)."""
    for (model, name), original in list(_saved.items()):
        setattr(_modeling_module(model), name, original)
        del _saved[(model, name)]


def is_enabled() -> bool:
    return bool(_saved)
