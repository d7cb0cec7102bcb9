"""What autograd keeps alive between a forward and its backward, measured."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def saved_tensor_bytes(fn: Callable[..., Tensor], inputs: dict[str, Tensor | None]) -> int:
    """Bytes of the distinct storages autograd saves for the backward of fn(**inputs), with every
    floating-point input a leaf that requires grad; the inputs' own storages are not counted
    (the caller holds them anyway)."""
    leaves = {k: (v.detach().clone().requires_grad_(v.is_floating_point()) if v is not None
                  else None) for k, v in inputs.items()}
    held = {v.untyped_storage().data_ptr() for v in leaves.values() if v is not None}
    kept: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in held:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(**leaves)
    return sum(kept.values())
