import os
import sys

import pytest
import torch

# Fill every kernel output with NaN before the kernel runs, so an element it fails to write
# shows up as a failure instead of stale memory (read once, when the extension loads).
os.environ.setdefault("MVSCAN_POISON_OUTPUTS", "1")
# Without a GPU the Triton kernels run on CPU tensors through Triton's interpreter (the "triton"
# backend of tests/backends.py); Triton reads this when the kernels are defined, on first use.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
sys.path.insert(0, os.path.dirname(__file__))


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true",
                     help="also run tests marked slow (minutes each, tens of GiB of GPU memory)")


def pytest_collection_modifyitems(config, items):
    """Tests marked slow run only with --run-slow: a GPU call is limited in time, and the
    > 2^31-element test alone can take most of it."""
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: opt in with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
