"""mambavision: every released MambaVision variant on mvscan's kernels, loading NVIDIA's
checkpoint files unchanged and running wherever PyTorch runs, CPU included."""

from .checkpoint import CheckpointError, load_checkpoint, read_state_dict
from .configs import VARIANTS
from .factory import create_model, list_models
from .inference import optimize_for_inference
from .model import MambaVision
from .timm_registry import register_with_timm

# timm.create_model("mamba_vision_T") works once mambavision is imported, when timm is installed.
TIMM_REGISTERED = register_with_timm()

__all__ = ["CheckpointError", "MambaVision", "TIMM_REGISTERED", "VARIANTS", "create_model",
           "list_models", "load_checkpoint", "optimize_for_inference", "read_state_dict"]
