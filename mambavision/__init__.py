"""mambavision: every released MambaVision variant on mvscan's kernels, loading NVIDIA's
checkpoint files unchanged and running wherever PyTorch runs, CPU included."""

from .checkpoint import CheckpointError, load_checkpoint, read_state_dict
from .configs import VARIANTS
from .factory import create_model, list_models
from .model import MambaVision

__all__ = ["CheckpointError", "MambaVision", "VARIANTS", "create_model", "list_models",
           "load_checkpoint", "read_state_dict"]
