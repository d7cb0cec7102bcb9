"""The benchmark suite and the benchmark command run end to end (timing disabled, one repeat),
so they cannot rot between the times someone measures with them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MVSCAN_POISON_OUTPUTS"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_benchmark_suite_smoke():
    res = run("-m", "pytest", "benchmarks", "--benchmark-disable", "-q", "-p", "no:cacheprovider")
    assert res.returncode == 0, res.stdout + res.stderr


def test_benchmark_command_smoke():
    res = run("-m", "mvscan.benchmark", "--repeats", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [l for l in res.stdout.splitlines() if l.startswith("mambavision-T")]
    assert len(lines) == 4
    for line in lines:  # the max relative difference between mvscan and the reference
        assert float(line.split()[-1]) < 1e-5, line


BAD_BENCHMARK_ARGS = [(["--repeats", "0"], "--repeats must be at least 1"),
                      (["--batch", "0"], "--batch must be at least 1"),
                      (["--device", "tpu"], "--device must be cpu or cuda"),
                      (["--dtype", "int8"], "invalid choice")]
if not __import__("torch").cuda.is_available():
    BAD_BENCHMARK_ARGS.append((["--device", "cuda"], "no CUDA GPU is visible"))


@pytest.mark.parametrize("args,message", BAD_BENCHMARK_ARGS)
def test_benchmark_command_rejects_bad_arguments(args, message):
    res = run("-m", "mvscan.benchmark", *args)
    assert res.returncode != 0 and message in res.stderr
