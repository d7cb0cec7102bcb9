"""Every released MambaVision variant: architecture and preprocessing, as the official releases
define them."""

from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Variant:
    dim: int
    in_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: tuple[int, ...]
    drop_path_rate: float
    layer_scale: float | None
    resolution: int
    crop_pct: float
    crop_mode: str = "center"
    file: str = ""  # the released checkpoint's file name; timm's pretrained_cfg key
    params_m: float | None = None  # the official parameter count, millions

    def arch(self) -> dict:
        return dict(dim=self.dim, in_dim=self.in_dim, depths=self.depths,
                    num_heads=self.num_heads, window_size=self.window_size,
                    layer_scale=self.layer_scale)

    def pretrained_cfg(self) -> dict:
        """Preprocessing of the released weights, in timm's pretrained_cfg terms."""
        return dict(input_size=(3, self.resolution, self.resolution), mean=IMAGENET_MEAN,
                    std=IMAGENET_STD, crop_pct=self.crop_pct, crop_mode=self.crop_mode,
                    interpolation="bicubic", num_classes=1000, file=self.file)


_T = dict(dim=80, in_dim=32, num_heads=(2, 4, 8, 16), window_size=(8, 8, 14, 7),
          drop_path_rate=0.2, layer_scale=None, resolution=224)
_B = dict(dim=128, in_dim=64, depths=(3, 3, 10, 5), num_heads=(2, 4, 8, 16),
          window_size=(8, 8, 14, 7), drop_path_rate=0.3, layer_scale=1e-5, resolution=224,
          crop_pct=1.0)
_L = dict(dim=196, in_dim=64, num_heads=(4, 8, 16, 32), drop_path_rate=0.3, layer_scale=1e-5)
_L3 = dict(dim=256, in_dim=64, depths=(3, 3, 20, 10), num_heads=(4, 8, 16, 32),
           drop_path_rate=0.5, layer_scale=1e-5)

VARIANTS: dict[str, Variant] = {
    "mamba_vision_T": Variant(**_T, depths=(1, 3, 8, 4), crop_pct=1.0,
                              file="mambavision_tiny_1k.pth.tar", params_m=31.79),
    "mamba_vision_T2": Variant(**_T, depths=(1, 3, 11, 4), crop_pct=0.98,
                               file="mambavision_tiny2_1k.pth.tar", params_m=35.10),
    "mamba_vision_S": Variant(dim=96, in_dim=64, depths=(3, 3, 7, 5), num_heads=(2, 4, 8, 16),
                              window_size=(8, 8, 14, 7), drop_path_rate=0.2, layer_scale=None,
                              resolution=224, crop_pct=0.93,
                              file="mambavision_small_1k.pth.tar", params_m=50.14),
    "mamba_vision_B": Variant(**_B, file="mambavision_base_1k.pth.tar", params_m=97.69),
    "mamba_vision_B_21k": Variant(**_B, file="mambavision_base_21k.pth.tar", params_m=97.69),
    "mamba_vision_L": Variant(**_L, depths=(3, 3, 10, 5), window_size=(8, 8, 14, 7),
                              resolution=224, crop_pct=1.0,
                              file="mambavision_large_1k.pth.tar", params_m=227.96),
    "mamba_vision_L_21k": Variant(**_L, depths=(3, 3, 10, 5), window_size=(8, 8, 14, 7),
                                  resolution=224, crop_pct=1.0,
                                  file="mambavision_large_21k.pth.tar", params_m=227.96),
    "mamba_vision_L2": Variant(**_L, depths=(3, 3, 12, 5), window_size=(8, 8, 14, 7),
                               resolution=224, crop_pct=1.0,
                               file="mambavision_large2_1k.pth.tar", params_m=241.55),
    "mamba_vision_L2_512_21k": Variant(**_L, depths=(3, 3, 12, 5), window_size=(8, 8, 32, 16),
                                       resolution=512, crop_pct=0.93, crop_mode="squash",
                                       file="mambavision_L2_21k_240m_512.pth.tar",
                                       params_m=241.55),
    "mamba_vision_L3_256_21k": Variant(**_L3, window_size=(8, 8, 16, 8), resolution=256,
                                       crop_pct=1.0,
                                       file="mambavision_L3_21k_740m_256.pth.tar",
                                       params_m=739.57),
    "mamba_vision_L3_512_21k": Variant(**_L3, window_size=(8, 8, 32, 16), resolution=512,
                                       crop_pct=0.93, crop_mode="squash",
                                       file="mambavision_L3_21k_740m_512.pth.tar",
                                       params_m=739.57),
}
