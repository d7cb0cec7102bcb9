"""``mvscan.modules.Mamba``: mamba_ssm's Mamba block (``mamba_simple.Mamba``) on mvscan's
functions: the same constructor, initialisation and state_dict keys (weights load either way),
the fused mamba_inner_fn path in training, and prefill / decode with an inference cache."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .causal_conv1d import causal_conv1d_fn
from .decode import causal_conv1d_update, selective_state_update
from .mamba_inner import mamba_inner_fn
from .ops import selective_scan


@dataclass
class InferenceParams:
    """mamba_ssm's inference cache (``mamba_ssm.utils.generation.InferenceParams``): per layer_idx
    a (conv_state, ssm_state) pair in key_value_memory_dict, and the number of tokens already
    seen (seqlen_offset). Set seqlen_offset after each forward: 0 means a fresh prefill."""

    max_seqlen: int
    max_batch_size: int
    seqlen_offset: int = 0
    batch_size_offset: int = 0
    key_value_memory_dict: dict = field(default_factory=dict)
    lengths_per_sample: Tensor | None = None

    def reset(self, max_seqlen: int, max_batch_size: int) -> None:
        self.max_seqlen = max_seqlen
        self.max_batch_size = max_batch_size
        self.seqlen_offset = 0
        if self.lengths_per_sample is not None:
            self.lengths_per_sample.zero_()


class Mamba(nn.Module):
    """The Mamba (S6) mixer block: (batch, L, d_model) -> (batch, L, d_model).

    The constructor, initialisation and parameter names are mamba_ssm's (in_proj, conv1d,
    x_proj, dt_proj, A_log, D, out_proj), so a state_dict moves between the two unchanged.
    Forward paths:
      - training / no cache, use_fast_path: one fused ``mvscan.mamba_inner_fn`` node;
      - otherwise, or with an inference cache: causal_conv1d_fn + selective_scan_fn, filling the
        cache's conv and ssm states;
      - with a cache whose seqlen_offset > 0: one token goes through ``step`` (the decode
        kernels); several tokens continue from the cached states (chunked prefill), which
        mamba_ssm does not support.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        use_fast_path: bool = True,
        layer_idx: int | None = None,
        device=None,
        dtype=None,
    ):
        factory = {"device": device, "dtype": dtype}
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank
        self.use_fast_path = use_fast_path
        self.layer_idx = layer_idx
        self.activation = "silu"

        self.in_proj = nn.Linear(d_model, self.d_inner * 2, bias=bias, **factory)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=d_conv,
                                groups=self.d_inner, padding=d_conv - 1, bias=conv_bias,
                                **factory)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)

        # dt_proj's weight keeps the variance of its input; its bias makes softplus(bias) a
        # log-uniform step size in [dt_min, dt_max] (mamba_ssm's initialisation).
        dt_init_std = self.dt_rank ** -0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, dt_init_std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        else:
            raise ValueError(f"Mamba: dt_init must be 'random' or 'constant', got {dt_init!r}")
        dt = torch.exp(torch.rand(self.d_inner, **factory) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        self.dt_proj.bias._no_reinit = True

        # S4D-real: A = -(1..N) per channel, stored as log in float32.
        A = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    def _conv_weight(self) -> Tensor:
        return self.conv1d.weight.reshape(self.d_inner, self.d_conv)

    def _scan_params(self, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        """A, D and the step-size bias in the scan's accumulation dtype for inputs of dtype:
        float32 (as mamba_ssm computes them), float64 for float64 inputs."""
        acc = torch.float64 if dtype == torch.float64 else torch.float32
        return (-torch.exp(self.A_log.to(acc)), self.D.to(acc), self.dt_proj.bias.to(acc))

    def forward(self, hidden_states: Tensor,
                inference_params: InferenceParams | None = None) -> Tensor:
        """hidden_states: (batch, L, d_model) -> (batch, L, d_model), in its dtype."""
        batch, seqlen, _ = hidden_states.shape
        conv_state = ssm_state = None
        resume = False
        if inference_params is not None:
            conv_state, ssm_state = self._get_states_from_cache(inference_params, batch)
            resume = inference_params.seqlen_offset > 0
            if resume and seqlen == 1:
                out, _, _ = self.step(hidden_states, conv_state, ssm_state)
                return out

        # in_proj's (batch, L, 2 d_inner) output seen as (batch, 2 d_inner, L): the kernels
        # read it in place.
        xz = self.in_proj(hidden_states).transpose(1, 2)
        A, D, dt_bias = self._scan_params(xz.dtype)
        if self.use_fast_path and inference_params is None:
            return mamba_inner_fn(
                xz, self.conv1d.weight, self.conv1d.bias, self.x_proj.weight,
                self.dt_proj.weight, self.out_proj.weight, self.out_proj.bias, A, None, None,
                D, delta_bias=dt_bias, delta_softplus=True)

        x_in, z = xz.chunk(2, dim=1)
        conv_init = conv_state[..., 1:].to(x_in.dtype) if resume else None
        x = causal_conv1d_fn(x_in, self._conv_weight(), self.conv1d.bias,
                             initial_states=conv_init, activation=self.activation)
        if conv_state is not None:  # after the conv, which may read the old state in place
            # The cache keeps the last d_conv inputs (mamba_ssm's layout).
            if seqlen >= self.d_conv:
                tail = x_in[..., seqlen - self.d_conv:]
            else:
                older = (conv_state[..., seqlen:] if resume
                         else conv_state.new_zeros((batch, self.d_inner, self.d_conv - seqlen)))
                tail = torch.cat([older.to(x_in.dtype), x_in], dim=-1)
            conv_state.copy_(tail)
        x_dbl = self.x_proj(x.transpose(1, 2))  # (batch, L, R + 2N)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = (dt @ self.dt_proj.weight.t()).transpose(1, 2)  # (batch, d_inner, L), a view
        y = selective_scan(
            x, dt, A, B.transpose(1, 2), C.transpose(1, 2), D, z=z,
            delta_bias=dt_bias, delta_softplus=True,
            return_last_state=ssm_state is not None,
            initial_state=ssm_state.to(A.dtype) if resume else None)
        if ssm_state is not None:
            y, last_state = y
            ssm_state.copy_(last_state)
        return self.out_proj(y.transpose(1, 2))

    def step(self, hidden_states: Tensor, conv_state: Tensor,
             ssm_state: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One token: hidden_states (batch, 1, d_model); conv_state (batch, d_inner, d_conv) and
        ssm_state (batch, d_inner, d_state) updated in place. Returns (out (batch, 1, d_model),
        conv_state, ssm_state)."""
        if hidden_states.dim() != 3 or hidden_states.shape[1] != 1:
            raise ValueError("Mamba.step: hidden_states must be (batch, 1, d_model), got shape "
                             f"{tuple(hidden_states.shape)}")
        xz = self.in_proj(hidden_states.squeeze(1))
        x, z = xz.chunk(2, dim=-1)
        x = causal_conv1d_update(x, conv_state, self._conv_weight(), self.conv1d.bias,
                                 self.activation)
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)  # dt_bias is added by the update
        A, D, dt_bias = self._scan_params(x.dtype)
        y = selective_state_update(ssm_state, x, dt, A, B, C, D, z=z, dt_bias=dt_bias,
                                   dt_softplus=True)
        return self.out_proj(y).unsqueeze(1), conv_state, ssm_state

    def allocate_inference_cache(self, batch_size: int, max_seqlen: int, dtype=None,
                                 **kwargs) -> tuple[Tensor, Tensor]:
        """Zeroed (conv_state (batch, d_inner, d_conv), ssm_state (batch, d_inner, d_state)),
        in the conv's and dt_proj's dtypes unless dtype is given (mamba_ssm's rule)."""
        device = self.out_proj.weight.device
        conv_state = torch.zeros(batch_size, self.d_inner, self.d_conv, device=device,
                                 dtype=self.conv1d.weight.dtype if dtype is None else dtype)
        ssm_state = torch.zeros(batch_size, self.d_inner, self.d_state, device=device,
                                dtype=self.dt_proj.weight.dtype if dtype is None else dtype)
        return conv_state, ssm_state

    def _get_states_from_cache(self, inference_params: InferenceParams, batch_size: int,
                               initialize_states: bool = False) -> tuple[Tensor, Tensor]:
        if self.layer_idx is None:
            raise ValueError("Mamba: layer_idx must be set to use an inference cache")
        cache = inference_params.key_value_memory_dict
        if self.layer_idx not in cache:
            cache[self.layer_idx] = self.allocate_inference_cache(batch_size,
                                                                  inference_params.max_seqlen)
        conv_state, ssm_state = cache[self.layer_idx]
        if initialize_states:
            conv_state.zero_()
            ssm_state.zero_()
        return conv_state, ssm_state

