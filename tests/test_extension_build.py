"""How the extension was linked: against the shared libstdc++ that torch itself loads (setup.py
refuses a static one; a GPU image's g++ wrapper produced such a build, which crashed on its first
formatted error message: tests/test_selective_scan_inputs.py is the error-path check)."""

import shutil
import subprocess
import sys

import pytest

from mvscan import _C


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("readelf") is None,
                    reason="needs Linux and readelf")
def test_extension_links_the_shared_libstdcxx():
    dynamic = subprocess.run(["readelf", "-d", _C.__file__], capture_output=True,
                             text=True, check=True).stdout
    assert "Shared library: [libstdc++.so" in dynamic

