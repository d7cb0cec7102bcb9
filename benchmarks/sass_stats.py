"""What the compiled CUDA kernels cost per thread and per loop iteration, read from the built
extension without a GPU: registers, stack and local bytes, the occupancy registers allow, and the
SASS of every innermost loop by instruction class (global/shared loads and stores, shuffles,
barriers, special-function and floating-point math).

    python benchmarks/sass_stats.py [--arch sm_90] [--json FILE]

cuobjdump ships with the CUDA toolkit and inside triton's package (triton/backends/nvidia/bin);
the extension must have been built with CUDA for the arch asked for (the default build covers
sm_80 and sm_90). Counts are static: an instruction inside a loop is counted once per iteration of
that loop, whatever its trip count, and predicated-off instructions count too.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Instruction classes, by SASS opcode prefix (the part before the first dot).
CLASSES = {
    "global_load": ("LDG",), "global_store": ("STG",), "shared_load": ("LDS",),
    "shared_store": ("STS",), "local": ("LDL", "STL"), "shuffle": ("SHFL",),
    "barrier": ("BAR",), "special_fn": ("MUFU",), "fp32": ("FFMA", "FADD", "FMUL", "FMNMX"),
    "fp64": ("DFMA", "DADD", "DMUL"), "convert": ("F2F", "F2I", "I2F", "F2FP", "HADD2", "PRMT"),
    "branch": ("BRA", "BRX", "EXIT", "RET", "CALL"),
}

# H100 (sm_90) register file: 64K 32-bit registers per SM, at most 64 resident warps; registers
# are allocated per warp in units of 256.
REGISTERS_PER_SM = 65536
MAX_WARPS_PER_SM = 64
REGISTER_ALLOC_UNIT = 256


@dataclass
class Loop:
    start: int  # address of the first instruction (the backward branch's target)
    end: int  # address of the backward branch
    instructions: int
    by_class: dict[str, int] = field(default_factory=dict)


@dataclass
class KernelStats:
    name: str  # demangled
    registers: int
    stack_bytes: int
    local_bytes: int
    static_shared_bytes: int
    max_warps_by_registers: int
    instructions: int = 0
    innermost_loops: list[Loop] = field(default_factory=list)


def find_cuobjdump() -> str | None:
    """cuobjdump from PATH, the CUDA toolkit, or triton's package."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if home and os.path.isfile(os.path.join(home, "bin", "cuobjdump")):
            return os.path.join(home, "bin", "cuobjdump")
    try:
        import triton
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    return path if os.path.isfile(path) else None


def find_extension() -> str:
    """The built mvscan._C library of this checkout."""
    found = sorted(glob.glob(os.path.join(ROOT, "mvscan", "_C*.so")))
    if not found:
        import mvscan._C as ext  # an installed (non-editable) build

        return ext.__file__
    return found[0]


def demangle(names: list[str]) -> dict[str, str]:
    """Mangled -> readable names (c++filt; the mangled name where it is missing)."""
    if not names or shutil.which("c++filt") is None:
        return {n: n for n in names}
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True,
                         check=True).stdout.splitlines()
    return dict(zip(names, out))


def max_warps_by_registers(registers: int) -> int:
    per_warp = -(-registers * 32 // REGISTER_ALLOC_UNIT) * REGISTER_ALLOC_UNIT
    return min(MAX_WARPS_PER_SM, REGISTERS_PER_SM // max(per_warp, 1))


_RESOURCE = re.compile(r"Function (\S+):\s*\n\s*REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)")


def parse_resources(text: str) -> dict[str, tuple[int, int, int, int]]:
    """cuobjdump -res-usage output -> {mangled name: (registers, stack, shared, local)}."""
    return {m[1]: (int(m[2]), int(m[3]), int(m[4]), int(m[5])) for m in _RESOURCE.finditer(text)}


_FUNCTION = re.compile(r"^\s*Function : (\S+)\s*$")
_INSTRUCTION = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)(.*?);")
_BRANCH_TARGET = re.compile(r"0x([0-9a-f]+)")


def instruction_class(opcode: str) -> str | None:
    base = opcode.split(".")[0]
    for name, prefixes in CLASSES.items():
        if base in prefixes:
            return name
    return None


def parse_sass(text: str) -> dict[str, list[tuple[int, str, str]]]:
    """cuobjdump -sass output -> {mangled name: [(address, opcode, operands), ...]}."""
    functions: dict[str, list[tuple[int, str, str]]] = {}
    current: list[tuple[int, str, str]] | None = None
    for line in text.splitlines():
        m = _FUNCTION.match(line)
        if m:
            current = functions.setdefault(m[1], [])
            continue
        m = _INSTRUCTION.match(line)
        if m and current is not None:
            current.append((int(m[1], 16), m[3], m[4]))
    return functions


def innermost_loops(code: list[tuple[int, str, str]]) -> list[Loop]:
    """Loops are backward branches (target below the branch); the innermost ones contain no
    other loop. Each is counted by instruction class."""
    spans = []
    for address, opcode, operands in code:
        if opcode.split(".")[0] == "BRA":
            target = _BRANCH_TARGET.search(operands)
            # A branch to itself is the padding after EXIT, not a loop.
            if target and int(target[1], 16) < address:
                spans.append((int(target[1], 16), address))
    inner = [s for s in spans
             if not any(o != s and s[0] <= o[0] and o[1] <= s[1] for o in spans)]
    loops = []
    for start, end in sorted(set(inner)):
        body = [op for a, op, _ in code if start <= a <= end]
        by_class: dict[str, int] = {}
        for op in body:
            cls = instruction_class(op)
            if cls is not None:
                by_class[cls] = by_class.get(cls, 0) + 1
        loops.append(Loop(start, end, len(body), by_class))
    return loops


def kernel_stats(library: str, arch: str = "sm_90", cuobjdump: str | None = None
                 ) -> list[KernelStats]:
    """Resources and innermost-loop instruction counts of every kernel compiled for arch."""
    tool = cuobjdump or find_cuobjdump()
    if tool is None:
        raise FileNotFoundError("cuobjdump not found (CUDA toolkit, or triton's package)")
    res_text = subprocess.run([tool, "-res-usage", "-arch", arch, library], capture_output=True,
                              text=True, check=True).stdout
    sass_text = subprocess.run([tool, "-sass", "-arch", arch, library], capture_output=True,
                               text=True, check=True).stdout
    resources = parse_resources(res_text)
    sass = parse_sass(sass_text)
    names = demangle(sorted(resources))
    stats = []
    for mangled, (regs, stack, shared, local) in sorted(resources.items()):
        code = sass.get(mangled, [])
        stats.append(KernelStats(name=names[mangled], registers=regs, stack_bytes=stack,
                                 local_bytes=local, static_shared_bytes=shared,
                                 max_warps_by_registers=max_warps_by_registers(regs),
                                 instructions=len(code), innermost_loops=innermost_loops(code)))
    return stats


def short_name(name: str) -> str:
    """"void mvscan::cuda::selective_scan_fwd_kernel<float>(...)" -> "selective_scan_fwd_kernel<float>"."""
    name = name.split("(")[0].replace("void ", "").replace("mvscan::cuda::", "")
    return name.replace("c10::", "")


def print_table(stats: list[KernelStats]) -> None:
    print(f"{'kernel':48} {'regs':>4} {'stack':>5} {'local':>5} {'warps/SM':>8} "
          f"{'instr':>6}  innermost loops: instructions (global ld/st, shared ld/st, shfl, bar)")
    for s in stats:
        loops = "; ".join(
            f"{lp.instructions} ({lp.by_class.get('global_load', 0)}/"
            f"{lp.by_class.get('global_store', 0)}, {lp.by_class.get('shared_load', 0)}/"
            f"{lp.by_class.get('shared_store', 0)}, {lp.by_class.get('shuffle', 0)}, "
            f"{lp.by_class.get('barrier', 0)})" for lp in s.innermost_loops)
        print(f"{short_name(s.name):48} {s.registers:4d} {s.stack_bytes:5d} {s.local_bytes:5d} "
              f"{s.max_warps_by_registers:8d} {s.instructions:6d}  {loops}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="sm_90", help="the cubin to read (default sm_90)")
    parser.add_argument("--library", default=None, help="the extension (default: this checkout's)")
    parser.add_argument("--json", metavar="FILE", help="also write the stats as JSON")
    args = parser.parse_args(argv)
    try:
        stats = kernel_stats(args.library or find_extension(), args.arch)
    except (FileNotFoundError, subprocess.CalledProcessError, ImportError) as exc:
        print(f"sass_stats: {exc}", file=sys.stderr)
        return 2
    if not stats:
        print(f"sass_stats: no {args.arch} kernels in the extension (built without CUDA?)",
              file=sys.stderr)
        return 2
    print_table(stats)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"arch": args.arch, "kernels": [asdict(s) for s in stats]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
