"""Command-line vocabulary shared by `python -m mvscan.benchmark` and `python -m mambavision`:
the dtype names, --device resolution, integer checks, and a parser whose errors are one line."""

from __future__ import annotations

import argparse

import torch

# --dtype names -> torch dtypes.
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16,
                                  "bf16": torch.bfloat16}
DEVICE_CHOICES = ("auto", "cpu", "cuda")


class UsageError(Exception):
    """A bad command-line argument found after parsing; its message is the one-line error."""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad argument prints one line (no usage block) and exits with 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def resolve_device(choice: str) -> str:
    """"auto", "cpu" or "cuda" -> "cpu" or "cuda"; auto picks cuda when torch sees a GPU.

    Raises UsageError for anything else, or for cuda without a visible GPU."""
    if choice not in DEVICE_CHOICES:
        raise UsageError(f"--device must be one of {', '.join(DEVICE_CHOICES)}, got {choice!r}")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda, but no CUDA GPU is visible to torch")
    return choice


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a float >= 0 (not NaN)."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value
