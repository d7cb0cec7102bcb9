"""Integrations of mvscan's kernels into other libraries' models (import each submodule
explicitly: ``import mvscan.integrations.transformers``)."""
