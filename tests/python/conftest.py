"""What the Python tiers share: the ntk binary under test ($NTK_BIN, by default <repo>/build/ntk)."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NTK_BIN = Path(os.environ.get("NTK_BIN", REPO / "build" / "ntk"))


@pytest.fixture(scope="session")
def ntk_bin():
    if not (NTK_BIN.is_file() and os.access(NTK_BIN, os.X_OK)):
        if "NTK_BIN" in os.environ:  # the test scripts name it: a missing binary is a failure there
            pytest.fail(f"NTK_BIN={NTK_BIN} is not an executable")
        pytest.skip(f"ntk binary not found at {NTK_BIN}: build the `ntk` target "
                    "(cmake --build build --target ntk) or point NTK_BIN at it")
    return NTK_BIN
