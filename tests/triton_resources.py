"""The Triton kernels as an H100 would run them, checked without one: the launches a launcher
really makes are recorded (not run), then compiled for sm_90 with Triton's bundled ptxas in a
fresh process (one that interprets Triton kernels, as the tests' does under TRITON_INTERPRET=1,
cannot compile them), and the cubin's registers and stack (spilled registers) are read with the
bundled cuobjdump: what the interpreter cannot show (code only the compiler rejects, register
pressure, the load layouts it picks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRITON_TYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16",
                torch.float64: "fp64", torch.int32: "i32"}


def cuobjdump_path() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    return path if os.path.exists(path) else None


def record_launches(monkeypatch, module, kernel_names, run) -> list:
    """[kernel name, arguments as (kind, dtype or value), constexpr kwargs] of every launch of
    module's kernels that run() makes (the kernels replaced by recorders: nothing runs)."""
    launches = []

    class Recorder:
        def __init__(self, name):
            self.name = name

        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                spec = [("tensor", TRITON_TYPES[a.dtype]) if isinstance(a, torch.Tensor)
                        else ("int", int(a)) for a in args]
                launches.append([self.name, spec, kwargs])
            return launch

    for name in kernel_names:
        monkeypatch.setattr(module, name, Recorder(name))
    run()
    return launches


def compile_launches(module_name: str, launches: list) -> list[dict]:
    """Each recorded launch compiled for sm_90: {"regs", "stack", "ttgir"}."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), module_name],
                          input=json.dumps(launches), capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"compiling the Triton kernels failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def _resource_usage(cubin: bytes) -> tuple[int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        out = subprocess.run([cuobjdump_path(), "--dump-resource-usage", path],
                             capture_output=True, text=True, check=True).stdout
    fields = dict(item.split(":", 1) for line in out.splitlines() if "REG:" in line
                  for item in line.split())
    return int(fields["REG"]), int(fields["STACK"])


def _compile_main(module_name: str) -> None:
    import importlib

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    module = importlib.import_module(module_name)
    results = []
    for name, args, kwargs in json.load(sys.stdin):
        kernel = getattr(module, name)
        names = kernel.arg_names
        unspecialized = {names[i] if isinstance(i, int) else i for i in kernel.do_not_specialize}
        options = {"num_warps": kwargs.pop("num_warps")}
        # As a launch: tensors are typed pointers; integers equal to 1 are specialized (what
        # makes a unit stride known to the compiler), other integers i32 (i64 when large).
        signature, constexprs = {}, dict(kwargs)
        for arg_name, (kind, value) in zip(names, args):
            if kind == "tensor":
                signature[arg_name] = "*" + value
            elif value == 1 and arg_name not in unspecialized:
                signature[arg_name], constexprs[arg_name] = "constexpr", 1
            else:
                signature[arg_name] = "i32" if abs(value) < 2**31 else "i64"
        signature.update({k: "constexpr" for k in kwargs})
        if list(signature) != names:
            raise SystemExit(f"{name}: the launch's arguments do not fit the kernel's signature")
        compiled = triton.compile(ASTSource(kernel, signature, constexprs),
                                  target=GPUTarget("cuda", 90, 32), options=options)
        regs, stack = _resource_usage(compiled.asm["cubin"])
        results.append({"regs": regs, "stack": stack, "ttgir": compiled.asm["ttgir"]})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    _compile_main(sys.argv[1])
