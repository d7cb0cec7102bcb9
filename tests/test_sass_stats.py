"""benchmarks/sass_stats.py: its SASS parsing on a known snippet, and, where the extension was
built with CUDA (CI's build is), the resources and loops of every compiled kernel."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
import sass_stats  # noqa: E402

import mvscan  # noqa: E402

SNIPPET = """
\t\tFunction : _Z6kernelPf
        /*0000*/                   LDC R1, c[0x0][0x28] ;   /* 0x00000a00ff017b82 */
        /*0010*/                   LDG.E R2, desc[UR4][R4.64] ;
        /*0020*/                   FFMA R3, R2, R2, R3 ;
        /*0030*/                   SHFL.BFLY PT, R5, R3, 0x1, 0x1f ;
        /*0040*/               @P0 BRA 0x10 ;
        /*0050*/                   STS [R0], R3 ;
        /*0060*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*0070*/                   EXIT ;
        /*0080*/                   BRA 0x80;
"""


def test_parses_innermost_loop_by_class():
    code = sass_stats.parse_sass(SNIPPET)["_Z6kernelPf"]
    assert len(code) == 9
    (loop,) = sass_stats.innermost_loops(code)
    assert (loop.start, loop.end, loop.instructions) == (0x10, 0x40, 4)
    assert loop.by_class == {"global_load": 1, "fp32": 1, "shuffle": 1, "branch": 1}


def test_parses_resources_and_register_occupancy():
    text = (" Function _Z6kernelPf:\n  REG:58 STACK:136 SHARED:1024 LOCAL:8 CONSTANT[0]:920 "
            "TEXTURE:0\n")
    assert sass_stats.parse_resources(text) == {"_Z6kernelPf": (58, 136, 1024, 8)}
    assert sass_stats.max_warps_by_registers(32) == 64
    assert sass_stats.max_warps_by_registers(58) == 32  # 1856 -> 2048 registers per warp
    assert sass_stats.max_warps_by_registers(255) == 8


@pytest.mark.skipif("cuda" not in mvscan.KERNEL_DEVICES, reason="extension built without CUDA")
@pytest.mark.skipif(sass_stats.find_cuobjdump() is None, reason="no cuobjdump")
def test_every_kernel_of_the_built_extension():
    stats = sass_stats.kernel_stats(sass_stats.find_extension(), "sm_90")
    names = [sass_stats.short_name(s.name) for s in stats]
    instances = {"selective_scan_fwd_kernel": 1, "selective_scan_bwd_kernel": 1,
                 "conv_fwd_kernel": 1, "conv_bwd_dx_kernel": 1, "conv_bwd_dweight_kernel": 1,
                 "conv_fwd_wide_kernel": 1, "conv_bwd_dx_wide_kernel": 1,
                 "conv_bwd_dweight_wide_kernel": 1}  # per dtype
    for kernel, per_dtype in instances.items():
        count = sum(n.startswith(kernel + "<") for n in names)
        assert count == per_dtype * len(mvscan.INPUT_DTYPES), kernel
    for s in stats:
        assert 0 < s.registers <= 255 and s.instructions > 0, s.name
        assert s.innermost_loops, s.name
    # The scan's and every conv kernel's per-thread arrays (the conv run kernels' windows, the
    # dweight sums) are indexed only by unrolled loops: none may go to the stack or local memory.
    in_registers = [s for s in stats if "selective_scan" in s.name or "conv_" in s.name]
    for s in in_registers:
        assert s.stack_bytes == 0 and s.local_bytes == 0, s.name


@pytest.mark.skipif("cuda" not in mvscan.KERNEL_DEVICES, reason="extension built without CUDA")
@pytest.mark.skipif(sass_stats.find_cuobjdump() is None, reason="no cuobjdump")
def test_decode_step_kernels_keep_their_arrays_in_registers():
    """The decode steps hold per-lane arrays (the state update: its states' exp(dt A), dt x B, C
    and h; the conv update: K weights and the window, over a compile-time width with every loop
    unrolled): none may go to the stack or local memory. The conv update is compiled for two
    widths (4 and 32) per dtype."""
    stats = sass_stats.kernel_stats(sass_stats.find_extension(), "sm_90")
    conv = [s for s in stats if "causal_conv1d_update_kernel" in s.name]
    state = [s for s in stats if "selective_state_update_kernel" in s.name]
    assert len(conv) == 2 * len(mvscan.INPUT_DTYPES) and state
    for s in conv + state:
        assert s.stack_bytes == 0 and s.local_bytes == 0, s.name
