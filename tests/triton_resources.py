"""Compiles Triton kernels for an sm_90 GPU on a machine without one (Triton's bundled ptxas) and
reads their registers and stack (spilled registers: local memory) with the bundled cuobjdump: what
the interpreter cannot show. `resources(specs)` runs the compiles in a fresh process, since a
process that interprets Triton kernels (TRITON_INTERPRET=1, the tests') cannot compile them."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import subprocess
import sys
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRITON_TYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16",
                torch.float64: "fp64"}


def cuobjdump_path() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    return path if os.path.exists(path) else None


def signature(kernel, pointer_types: dict[str, str], default_pointer: str,
              constexprs: dict) -> dict[str, str]:
    """Triton's signature of a kernel: named pointers typed as given, other pointers
    default_pointer, strides (s*) i64 and other integers i32."""
    sig = {}
    for name in inspect.signature(kernel.fn).parameters:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = pointer_types.get(name, default_pointer)
        else:
            sig[name] = "i64" if name.startswith("s") else "i32"
    return sig


def registers_and_stack(kernel, pointer_types: dict[str, str], default_pointer: str,
                        constexprs: dict, num_warps: int, capability: int = 90) -> tuple[int, int]:
    """(registers a thread, stack bytes a thread) of the kernel compiled for sm_<capability>."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    src = ASTSource(fn=kernel, constexprs=constexprs,
                    signature=signature(kernel, pointer_types, default_pointer, constexprs))
    compiled = triton.compile(src, target=GPUTarget("cuda", capability, 32),
                              options=dict(num_warps=num_warps))
    with tempfile.TemporaryDirectory() as tmp:
        cubin = os.path.join(tmp, "kernel.cubin")
        with open(cubin, "wb") as f:
            f.write(compiled.asm["cubin"])
        out = subprocess.run([cuobjdump_path(), "--dump-resource-usage", cubin],
                             capture_output=True, text=True, check=True).stdout
    fields = dict(item.split(":", 1) for line in out.splitlines() if "REG:" in line
                  for item in line.split())
    return int(fields["REG"]), int(fields["STACK"])


def resources(specs: list[dict]) -> list[tuple[int, int]]:
    """(registers, stack bytes) for each spec: {"kernel": "module:name", "pointer_types": {...},
    "default_pointer": "*fp32", "constexprs": {...}, "num_warps": 8}, compiled in a new process
    without TRITON_INTERPRET."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, os.path.abspath(__file__)], input=json.dumps(specs),
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"compiling the Triton kernels failed:\n{result.stderr}")
    return [tuple(r) for r in json.loads(result.stdout)]


def _main() -> None:
    sys.path.insert(0, ROOT)
    out = []
    for spec in json.load(sys.stdin):
        module, name = spec["kernel"].split(":")
        kernel = getattr(importlib.import_module(module), name)
        out.append(registers_and_stack(kernel, spec["pointer_types"], spec["default_pointer"],
                                       spec["constexprs"], spec["num_warps"]))
    print(json.dumps(out))


if __name__ == "__main__":
    _main()
