"""The MambaVision network: stem, four stages, BatchNorm head; classification or features."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .blocks import LayerNorm2d, MambaVisionLayer, PatchEmbed


def stage_indices(num_stages: int, indices: int | Sequence[int] | None) -> tuple[list[int], int]:
    """Which stages forward_intermediates returns, by timm's rule: None for every stage, an int n
    for the last n stages, or a sequence of stage indices (negative ones count from the end).
    Returns the stage indices in order and the largest one."""
    if indices is None:
        indices = num_stages
    if isinstance(indices, int):
        if not 1 <= indices <= num_stages:
            raise ValueError(f"indices: an int n takes the last n of {num_stages} stages, so "
                             f"1 <= n <= {num_stages}; got {indices}")
        take = list(range(num_stages - indices, num_stages))
    else:
        take = sorted({i + num_stages if i < 0 else i for i in indices})
        if not take or not all(0 <= i < num_stages for i in take):
            raise ValueError(f"indices: stage indices must lie in [-{num_stages}, {num_stages}) "
                             f"and not be empty; got {list(indices)}")
    return take, take[-1]


class MambaVision(nn.Module):
    """MambaVision (Hatamizadeh & Kautz, CVPR 2025), weight-compatible with the official release.

    Stage widths dim, 2 dim, 4 dim, 8 dim; stages 1-2 are conv blocks, stages 3-4 hybrid
    Mamba/attention blocks in windows. Input (B, in_chans, H, W), any H and W (stages 3-4 pad
    to their window); output logits (B, num_classes), or with features_only the stage outputs
    before each downsample (strides 4, 8, 16, 32), each through a channels-first LayerNorm:
    forward_intermediates(x, out_indices, norm=True, stop_early=True, intermediates_only=True).
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
        device = next(self.parameters()).device
        self.head = (nn.Linear(self.num_features, num_classes, device=device)
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

    def _stage_norm(self, i: int) -> nn.Module | None:
        """The norm this model has for stage i's output, if any: a features_only model's output
        LayerNorm (its out_indices), a classifier's final BatchNorm (the last stage)."""
        if self.features_only:
            return self.out_norms[str(i)] if str(i) in self.out_norms else None
        return self.norm if i == len(self.levels) - 1 else None

    def forward_intermediates(self, x: Tensor, indices: int | Sequence[int] | None = None,
                              norm: bool = False, stop_early: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False
                              ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """The stage outputs before each downsample, with timm's forward_intermediates API.

        Args:
            x: (B, in_chans, H, W) images, float (or under autocast).
            indices: the stages to return: None for all, an int n for the last n, or a sequence
                of stage indices (negative ones count from the end); see stage_indices.
            norm: pass each returned stage output through the model's norm for that stage,
                where it has one: a features_only model's output LayerNorms (the stages of its
                out_indices), a classifier's final BatchNorm (last stage only). Other stages
                come back as they are.
            stop_early: run no stage past the last one asked for (its downsample included).
            output_fmt: "NCHW", the only layout.
            intermediates_only: return only the list.

        Returns:
            intermediates: per stage asked for, in stage order, (B, dim * 2**i, ~H / 2**(i+2),
                ~W / 2**(i+2)) in the blocks' dtype. Unless intermediates_only, first the final
                map: forward_features(x) when the last stage ran (a classifier's BatchNorm
                applied), else the un-normed output of the last stage run before its downsample.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt: only 'NCHW' is supported, got {output_fmt!r}")
        take, last_take = stage_indices(len(self.levels), indices)
        final_stage = len(self.levels) - 1
        last = last_take if stop_early else final_stage
        intermediates = []
        x = self.patch_embed(x)
        for i, level in enumerate(self.levels):
            y = level.forward_blocks(x)
            if i in take:
                stage_norm = self._stage_norm(i) if norm else None
                intermediates.append(y if stage_norm is None else stage_norm(y))
            x = y
            if i == last:
                break
            x = y if level.downsample is None else level.downsample(y)
        if intermediates_only:
            return intermediates
        if last == final_stage and not self.features_only:
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drops what forward_intermediates(x, indices) never uses: the stages after the last
        index asked for, that stage's downsample, and (prune_head) the classifier or
        (prune_norm) the final norm. Cutting stages drops norm and head anyway: their widths
        fit only the last stage. Returns the stage indices, as stage_indices gives them."""
        take, last_take = stage_indices(len(self.levels), indices)
        if self.features_only and not any(i <= last_take for i in self.out_indices):
            raise ValueError(f"indices {indices} would cut every stage of out_indices "
                             f"{self.out_indices}")
        cut = last_take < len(self.levels) - 1
        self.levels = self.levels[:last_take + 1]
        self.levels[-1].downsample = None
        self.feature_info = [f for f in self.feature_info
                             if int(f["module"].rsplit(".", 1)[1]) <= last_take]
        if self.features_only:
            self.out_indices = tuple(i for i in self.out_indices if i <= last_take)
            for key in [k for k in self.out_norms if int(k) > last_take]:
                del self.out_norms[key]
        else:
            self.num_features = self.feature_info[-1]["num_chs"]
            if prune_norm or cut:
                self.norm = nn.Identity()
            if prune_head or cut:
                self.reset_classifier(0)
        return take

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        """(B, in_chans, H, W) -> logits (B, num_classes), or with features_only the normed
        stage outputs of out_indices (see forward_intermediates)."""
        if self.features_only:
            return self.forward_intermediates(x, self.out_indices, norm=True, stop_early=True,
                                              intermediates_only=True)
        return self.forward_head(self.forward_features(x))
