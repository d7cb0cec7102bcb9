"""The MambaVision network: stem, four stages, BatchNorm head; classification or features."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .blocks import LayerNorm2d, MambaVisionLayer, PatchEmbed


class MambaVision(nn.Module):
    """MambaVision (Hatamizadeh & Kautz, CVPR 2025), weight-compatible with the official release.

    Stage widths dim, 2 dim, 4 dim, 8 dim; stages 1-2 are conv blocks, stages 3-4 hybrid
    Mamba/attention blocks in windows. Input (B, in_chans, H, W), any H and W (stages 3-4 pad
    to their window); output logits (B, num_classes), or with features_only the stage outputs
    before each downsample (strides 4, 8, 16, 32), each through a channels-first LayerNorm.
    """

    def __init__(self, dim: int, in_dim: int, depths: Sequence[int], window_size: Sequence[int],
                 num_heads: Sequence[int], mlp_ratio: float = 4.0, drop_path_rate: float = 0.2,
                 in_chans: int = 3, num_classes: int = 1000, qkv_bias: bool = True,
                 layer_scale: float | None = None, scan_backend: str = "mvscan",
                 features_only: bool = False, out_indices: Sequence[int] = (0, 1, 2, 3)):
        super().__init__()
        if features_only and (not out_indices or any(i not in range(4) for i in out_indices)):
            raise ValueError(f"out_indices must be a non-empty subset of (0, 1, 2, 3), got {out_indices}")
        self.num_classes = num_classes
        self.num_features = int(dim * 2 ** (len(depths) - 1))
        self.features_only = features_only
        self.out_indices = tuple(sorted(set(out_indices)))
        self.patch_embed = PatchEmbed(in_chans, in_dim, dim)
        total = sum(depths)  # stochastic depth rising linearly over all blocks
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.levels = nn.ModuleList()
        for i, depth in enumerate(depths):
            self.levels.append(MambaVisionLayer(
                dim=int(dim * 2 ** i), depth=depth, num_heads=num_heads[i],
                window_size=window_size[i], conv=i < 2, downsample=i < 3, mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias, drop_path=rates[sum(depths[:i]):sum(depths[:i + 1])],
                layer_scale=layer_scale, scan_backend=scan_backend))
        self.feature_info = [dict(num_chs=int(dim * 2 ** i), reduction=4 * 2 ** i,
                                  module=f"levels.{i}") for i in range(len(depths))]
        if features_only:
            self.feature_info = [self.feature_info[i] for i in self.out_indices]
            self.out_norms = nn.ModuleDict(
                {str(i): LayerNorm2d(int(dim * 2 ** i)) for i in self.out_indices})
        else:
            self.norm = nn.BatchNorm2d(self.num_features)
            self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameters to exclude from weight decay: the SSM's A_log and D, layer scales, norms
        and biases."""
        skip = set()
        for name, p in self.named_parameters():
            if getattr(p, "_no_weight_decay", False) or p.ndim <= 1 or "gamma" in name:
                skip.add(name)
        return skip

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for level in self.levels:
            level.grad_checkpointing = enable

    def reset_classifier(self, num_classes: int) -> None:
        if self.features_only:
            raise RuntimeError("a features_only model has no classifier")
        self.num_classes = num_classes
        self.head = (nn.Linear(self.num_features, num_classes, device=self.norm.weight.device)
                     if num_classes > 0 else nn.Identity())

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, in_chans, H, W) -> the normalised final map (B, num_features, ~H/32, ~W/32)."""
        x = self.patch_embed(x)
        for level in self.levels:
            x = level(x)
        return self.norm(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.head(x)

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        """The stage outputs before each downsample at out_indices, each LayerNorm-ed."""
        x = self.patch_embed(x)
        outs = []
        last = max(self.out_indices)
        for i, level in enumerate(self.levels):
            y = level.forward_blocks(x)
            if i in self.out_indices:
                outs.append(self.out_norms[str(i)](y))
            if i == last:
                break
            x = y if level.downsample is None else level.downsample(y)
        return outs

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        if self.features_only:
            return self.forward_intermediates(x)
        return self.forward_head(self.forward_features(x))
