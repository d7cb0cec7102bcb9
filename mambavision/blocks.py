"""MambaVision's building blocks, named and shaped so that the official state_dict keys load
unchanged: stem, conv blocks, downsample, the MambaVision
mixer, attention, MLP, the hybrid block and the windowed stage."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import mvscan


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample while training."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map (the backbones' output norms)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class PatchEmbed(nn.Module):
    """Stride-4 stem: two 3x3 stride-2 convs, each followed by BatchNorm (eps 1e-4) and ReLU."""

    def __init__(self, in_chans: int = 3, in_dim: int = 64, dim: int = 96):
        super().__init__()
        self.proj = nn.Identity()
        self.conv_down = nn.Sequential(
            nn.Conv2d(in_chans, in_dim, 3, 2, 1, bias=False),
            nn.BatchNorm2d(in_dim, eps=1e-4),
            nn.ReLU(),
            nn.Conv2d(in_dim, dim, 3, 2, 1, bias=False),
            nn.BatchNorm2d(dim, eps=1e-4),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_down(self.proj(x))


class Downsample(nn.Module):
    """3x3 stride-2 conv, dim -> 2 dim, no bias, no norm."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Sequential(nn.Conv2d(dim, 2 * dim, 3, 2, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.reduction(x)


class ConvBlock(nn.Module):
    """x + drop_path(BN(conv3x3(GELU_tanh(BN(conv3x3(x))))))."""

    def __init__(self, dim: int, drop_path: float = 0.0, layer_scale: float | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, 1, 1)
        self.norm1 = nn.BatchNorm2d(dim, eps=1e-5)
        self.act1 = nn.GELU(approximate="tanh")
        self.conv2 = nn.Conv2d(dim, dim, 3, 1, 1)
        self.norm2 = nn.BatchNorm2d(dim, eps=1e-5)
        self.layer_scale = layer_scale is not None
        if self.layer_scale:
            self.gamma = nn.Parameter(layer_scale * torch.ones(dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        if self.layer_scale:
            y = y * self.gamma.view(1, -1, 1, 1)
        return x + self.drop_path(y)


class MambaVisionMixer(nn.Module):
    """The MambaVision mixer: in_proj, then on the x half a depthwise conv + SiLU and the
    selective scan, on the z half a depthwise conv + SiLU, then out_proj on their concatenation.

    dt_proj's bias is applied twice (inside dt_proj and again as the scan's delta_bias), exactly
    as in the released model: its weights were trained that way.

    scan_backend: "mvscan" (the compiled operators) or "reference" (F.conv1d and the pure-PyTorch
    scan), for comparison on the same weights.
    """

    def __init__(self, d_model: int, d_state: int = 8, d_conv: int = 3, expand: int = 1,
                 scan_backend: str = "mvscan"):
        super().__init__()
        if scan_backend not in ("mvscan", "reference"):
            raise ValueError(f"scan_backend must be 'mvscan' or 'reference', got {scan_backend!r}")
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16)
        self.scan_backend = scan_backend
        half = self.d_inner // 2
        self.in_proj = nn.Linear(d_model, self.d_inner, bias=False)
        self.x_proj = nn.Linear(half, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, half, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32))
                                  .repeat(half, 1).contiguous())
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(half))
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self.conv1d_x = nn.Conv1d(half, half, d_conv, groups=half, bias=False)
        self.conv1d_z = nn.Conv1d(half, half, d_conv, groups=half, bias=False)

    def forward(self, hidden_states: Tensor) -> Tensor:
        """hidden_states: (batch, L, d_model) -> (batch, L, d_model)."""
        xz = self.in_proj(hidden_states).transpose(1, 2)  # (batch, d_inner, L), a view
        x, z = xz.chunk(2, dim=1)
        A = -torch.exp(self.A_log.float())
        if self.scan_backend == "mvscan":
            conv, scan = mvscan.depthwise_conv1d, mvscan.selective_scan
        else:
            conv, scan = mvscan.depthwise_conv1d_ref, mvscan.selective_scan_ref
        x = conv(x, self.conv1d_x.weight, None, "same", "silu")
        z = conv(z, self.conv1d_z.weight, None, "same", "silu")
        x_dbl = self.x_proj(x.transpose(1, 2))  # (batch, L, dt_rank + 2 d_state)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = self.dt_proj(dt).transpose(1, 2)  # (batch, half, L), bias included once here
        y = scan(x, delta, A, B.transpose(1, 2), C.transpose(1, 2), self.D.float(), z=None,
                 delta_bias=self.dt_proj.bias.float(), delta_softplus=True)  # ... and again here
        return self.out_proj(torch.cat([y, z], dim=1).transpose(1, 2))


class Attention(nn.Module):
    """Multi-head self-attention with PyTorch's fused scaled_dot_product_attention."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = nn.Identity()
        self.k_norm = nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """x + drop_path(gamma_1 * mixer(LN(x))), then x + drop_path(gamma_2 * MLP(LN(x)));
    the mixer is attention or a MambaVision mixer."""

    def __init__(self, dim: int, num_heads: int, attention: bool, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_path: float = 0.0, layer_scale: float | None = None,
                 scan_backend: str = "mvscan"):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mixer = (Attention(dim, num_heads, qkv_bias) if attention
                      else MambaVisionMixer(dim, d_state=8, d_conv=3, expand=1,
                                            scan_backend=scan_backend))
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.layer_scale = layer_scale is not None
        if self.layer_scale:
            self.gamma_1 = nn.Parameter(layer_scale * torch.ones(dim))
            self.gamma_2 = nn.Parameter(layer_scale * torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        y = self.mixer(self.norm1(x))
        x = x + self.drop_path(y * self.gamma_1 if self.layer_scale else y)
        y = self.mlp(self.norm2(x))
        return x + self.drop_path(y * self.gamma_2 if self.layer_scale else y)


def attention_indices(depth: int) -> range:
    """Which blocks of a hybrid stage are attention: the last half (the larger half is Mamba)."""
    return range(depth // 2 + 1, depth) if depth % 2 else range(depth // 2, depth)


def window_partition(x: Tensor, w: int) -> Tensor:
    """(B, C, H, W) with H, W multiples of w -> (B * windows, w * w, C), windows row-major."""
    B, C, H, W = x.shape
    x = x.view(B, C, H // w, w, W // w, w)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(-1, w * w, C)


def window_reverse(windows: Tensor, w: int, H: int, W: int) -> Tensor:
    """Inverse of window_partition: (B * windows, w * w, C) -> (B, C, H, W)."""
    C = windows.shape[2]
    x = windows.reshape(-1, H // w, W // w, w, w, C)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(-1, C, H, W)


class MambaVisionLayer(nn.Module):
    """A stage: conv blocks (stages 1-2), or hybrid blocks run in w x w windows (stages 3-4),
    then an optional downsample. Maps are zero-padded right/bottom to a multiple of the window
    (padded tokens are not masked) and cropped back afterwards."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, conv: bool,
                 downsample: bool, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: list[float] | float = 0.0, layer_scale: float | None = None,
                 scan_backend: str = "mvscan"):
        super().__init__()
        rates = drop_path if isinstance(drop_path, list) else [drop_path] * depth
        self.conv = conv
        self.window_size = window_size
        if conv:
            self.blocks = nn.ModuleList(ConvBlock(dim, rates[i]) for i in range(depth))
        else:
            attn = set(attention_indices(depth))
            self.blocks = nn.ModuleList(
                Block(dim, num_heads, i in attn, mlp_ratio, qkv_bias, rates[i], layer_scale,
                      scan_backend) for i in range(depth))
        self.downsample = Downsample(dim) if downsample else None
        self.grad_checkpointing = False

    def run_blocks(self, x: Tensor) -> Tensor:
        for blk in self.blocks:
            if self.grad_checkpointing and self.training and not torch.jit.is_scripting():
                x = torch.utils.checkpoint.checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return x

    def forward_blocks(self, x: Tensor) -> Tensor:
        """The stage without its downsample: what detection/segmentation backbones tap."""
        if self.conv:
            return self.run_blocks(x)
        _, _, H, W = x.shape
        w = self.window_size
        pad_r, pad_b = (w - W % w) % w, (w - H % w) % w
        if pad_r or pad_b:
            x = F.pad(x, (0, pad_r, 0, pad_b))
        Hp, Wp = H + pad_b, W + pad_r
        x = window_reverse(self.run_blocks(window_partition(x, w)), w, Hp, Wp)
        if pad_r or pad_b:
            x = x[:, :, :H, :W].contiguous()
        return x

    def forward(self, x: Tensor) -> Tensor:
        x = self.forward_blocks(x)
        return x if self.downsample is None else self.downsample(x)
