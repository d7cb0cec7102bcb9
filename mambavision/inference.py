"""optimize_for_inference: a copy of a model that computes the same function, faster.

What it does, in order (each step exact in float32 up to rounding):
  1. Copies the model and puts the copy in eval mode; the caller's model is never touched.
  2. Folds every BatchNorm that follows a conv into that conv (the stem's two, both of each
     ConvBlock's): conv(x) * s + t with s = bn.weight / sqrt(running_var + eps) and
     t = bn.bias - running_mean * s becomes a conv with weight * s and bias * s + t.
  3. Folds each layer-scale gamma into the last affine layer of the branch it scales: a
     ConvBlock's conv2 (after its BN is folded), a Block's mixer output projection (the mixer's
     out_proj or attention's proj) for gamma_1 and mlp.fc2 for gamma_2. Variants without layer
     scale (T, T2, S) have nothing to fold.
  4. channels_last weights and inputs, the layout oneDNN's and cuDNN's convolutions prefer
     (on the 2-core CPU VM compiled T measured the same either way: freezing converts the conv
     weights itself; the official throughput setting uses it on GPUs).
  5. torch.compile(fullgraph=True) with inductor freezing: weights become constants, so inductor
     prepacks the Linear and conv weights for oneDNN and folds what is left of the affine maps.
     mvscan's operators are torch.library custom ops with fake kernels, so the graph has no
     break: inductor calls them as extern kernels. On CUDA the mode is "max-autotune" (Triton
     autotuning and CUDA graphs).
  6. dtype=torch.bfloat16 (or float16 on CUDA) runs the compiled model under autocast: Linear,
     conv and attention in that dtype (with freezing the weights are cast once, at compile time),
     norms and the scan's state in float32.

The returned module is for inference only: it runs its forward under torch.inference_mode(),
and with compile=True inductor treats the weights it saw at the first call as constants
(prepacked copies of some): change them afterwards and the results are undefined; optimize
again instead.
"""

from __future__ import annotations

import contextlib
import copy
import warnings

import torch
from torch import Tensor, nn

from .blocks import Attention, Block, ConvBlock, MambaVisionMixer, PatchEmbed

INFERENCE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def cpu_has_bf16_matmul() -> bool:
    """Whether this CPU has bf16 dot-product instructions oneDNN uses for bf16 matmuls and convs
    (AVX512-BF16 or AMX-BF16). Without them bf16 still runs, emulated, slower than fp32."""
    if not torch.backends.mkldnn.is_available():
        return False
    caps = torch._C._cpu._get_cpu_capability()
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


@torch.no_grad()
def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv computing bn(conv(x)) in eval mode (bn's running statistics), as a new module.
    conv and bn are left unchanged."""
    if bn.training or not bn.track_running_stats or bn.running_var is None:
        raise ValueError("fold_batchnorm: bn must be in eval mode with running statistics")
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.affine:
        scale = scale * bn.weight.double()
        shift = bn.bias.double() - bn.running_mean.double() * scale
    else:
        shift = -bn.running_mean.double() * scale
    fused = copy.deepcopy(conv)
    weight = conv.weight.double() * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
    bias = shift if conv.bias is None else conv.bias.double() * scale + shift
    fused.weight = nn.Parameter(weight.to(conv.weight.dtype), requires_grad=False)
    fused.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
    return fused


@torch.no_grad()
def fold_scale(layer: nn.Linear | nn.Conv2d, gamma: Tensor) -> None:
    """Makes layer compute gamma * layer(x), gamma scaling the output channels; in place."""
    g = gamma.detach().double()
    w = layer.weight
    w.copy_((w.double() * g.view(-1, *([1] * (w.dim() - 1)))).to(w.dtype))
    if layer.bias is not None:
        layer.bias.copy_((layer.bias.double() * g).to(layer.bias.dtype))


def mixer_output(mixer: nn.Module) -> nn.Linear:
    """The last affine layer of a Block's mixer: what gamma_1 scales."""
    if isinstance(mixer, MambaVisionMixer):
        return mixer.out_proj
    if isinstance(mixer, Attention):
        return mixer.proj
    raise TypeError(f"no known output projection in {type(mixer).__name__}")


def fold_model(model: nn.Module) -> nn.Module:
    """Folds, in place, every BatchNorm after a conv and every layer-scale gamma of the
    MambaVision blocks found in model (an eval-mode model). Returns model."""
    if model.training:
        raise ValueError("fold_model: the model must be in eval mode (BatchNorm folds its "
                         "running statistics)")
    for module in list(model.modules()):
        if isinstance(module, PatchEmbed):
            seq = module.conv_down
            for i in range(len(seq) - 1):
                if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                    seq[i] = fold_batchnorm(seq[i], seq[i + 1])
                    seq[i + 1] = nn.Identity()
        elif isinstance(module, ConvBlock):
            if isinstance(module.norm1, nn.BatchNorm2d):
                module.conv1 = fold_batchnorm(module.conv1, module.norm1)
                module.norm1 = nn.Identity()
            if isinstance(module.norm2, nn.BatchNorm2d):
                module.conv2 = fold_batchnorm(module.conv2, module.norm2)
                module.norm2 = nn.Identity()
            if module.layer_scale and isinstance(module.norm2, nn.Identity):
                fold_scale(module.conv2, module.gamma)
                del module.gamma
                module.layer_scale = False
        elif isinstance(module, Block) and module.layer_scale:
            fold_scale(mixer_output(module.mixer), module.gamma_1)
            fold_scale(module.mlp.fc2, module.gamma_2)
            del module.gamma_1, module.gamma_2
            module.layer_scale = False
    return model


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


class InferenceModel(nn.Module):
    """What optimize_for_inference returns: the folded model (`.model`, eager) run under
    inference_mode, in channels_last and autocast where chosen, through torch.compile when
    compiled."""

    def __init__(self, model: nn.Module, dtype: torch.dtype, channels_last: bool,
                 compile: bool):
        super().__init__()
        self.model = model
        self.dtype = dtype
        self.channels_last = channels_last
        self.compiled = compile
        if hasattr(model, "pretrained_cfg"):
            self.pretrained_cfg = model.pretrained_cfg
        device = model_device(model)
        self.device_type = device.type
        run = model
        if compile:
            mode = "max-autotune" if device.type == "cuda" else None
            run = torch.compile(model, fullgraph=True, dynamic=False, mode=mode)
        # Not a submodule: the compiled wrapper would list every weight a second time.
        object.__setattr__(self, "_run", run)

    def forward(self, x: Tensor) -> Tensor:
        layout = (torch.channels_last if self.channels_last and x.dim() == 4
                  else torch.contiguous_format)
        autocast = (torch.autocast(self.device_type, dtype=self.dtype)
                    if self.dtype != torch.float32 else contextlib.nullcontext())
        # The compiled graph guards on the grad mode and on whether x is an inference tensor:
        # running under inference_mode, always on an inference tensor, it sees the same state
        # whether the caller uses no_grad, inference_mode or neither (no recompilation).
        # Freezing is read when inductor compiles, i.e. at a first call or a recompilation, not
        # when torch.compile is called (torch.compile(options={"freezing": True}) does not reach
        # it in torch 2.14), so each call patches it for its duration.
        freezing = (torch._inductor.config.patch(freezing=True) if self.compiled
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast, freezing:
            x = (x.contiguous(memory_format=layout) if x.is_inference()
                 else x.clone(memory_format=layout))
            return self._run(x)

    def extra_repr(self) -> str:
        return (f"dtype={self.dtype}, channels_last={self.channels_last}, "
                f"compiled={self.compiled}")


def optimize_for_inference(model: nn.Module, *, dtype: torch.dtype | None = None,
                           compile: bool = True, channels_last: bool | None = None
                           ) -> InferenceModel:
    """A new module computing model's forward (fp32: the same function up to rounding) as fast
    as this device allows; model itself is left unchanged.

    Args:
        model: a MambaVision model (any variant, classifier or features_only), or any other
            nn.Module (then only steps 4-6 of the module docstring apply: no folding).
            Training-mode models are copied and the copy put in eval mode.
        dtype: None or torch.float32 for fp32; torch.bfloat16 for bf16 autocast (fast where the
            CPU has bf16 matrix instructions, see cpu_has_bf16_matmul; elsewhere it runs, slower,
            with a warning); torch.float16 on CUDA only.
        compile: torch.compile with inductor freezing (the first call compiles: 30-40 s
            for MambaVision-T on two CPU cores; each new input shape compiles again). False
            keeps the folded model eager.
        channels_last: None picks it by device (CPU: on; CUDA: on, as the official throughput
            setting recommends).

    Returns:
        an InferenceModel; its outputs are in dtype's precision (bf16 logits under bf16).
    """
    dtype = torch.float32 if dtype is None else dtype
    if dtype not in INFERENCE_DTYPES:
        raise ValueError(f"dtype must be None, torch.float32, torch.bfloat16 or torch.float16, "
                         f"got {dtype}")
    device = model_device(model)
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError("dtype=torch.float16 needs a CUDA model: CPUs have no fast fp16 "
                         "matmuls; use torch.bfloat16")
    if dtype == torch.bfloat16 and device.type == "cpu" and not cpu_has_bf16_matmul():
        warnings.warn("this CPU has no bf16 matrix instructions (AVX512-BF16/AMX): bf16 runs "
                      "emulated, likely slower than fp32", stacklevel=2)
    folded = fold_model(copy.deepcopy(model).eval())
    for p in folded.parameters():
        p.requires_grad_(False)
    if channels_last is None:
        channels_last = device.type in ("cpu", "cuda")
    if channels_last:
        folded = folded.to(memory_format=torch.channels_last)
    return InferenceModel(folded, dtype, channels_last, compile)
