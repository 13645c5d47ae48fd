"""What the Python tiers share: the ntk binary under test ($NTK_BIN, by default <repo>/build/ntk),
and the neural-tangents venv's python ($NT_PYTHON, by default <repo>/build-nt/venv/bin/python)."""
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NTK_BIN = Path(os.environ.get("NTK_BIN", REPO / "build" / "ntk"))
NT_PYTHON = Path(os.environ.get("NT_PYTHON", REPO / "build-nt" / "venv" / "bin" / "python"))


@pytest.fixture(scope="session")
def ntk_bin():
    if not (NTK_BIN.is_file() and os.access(NTK_BIN, os.X_OK)):
        if "NTK_BIN" in os.environ:  # the test scripts name it: a missing binary is a failure there
            pytest.fail(f"NTK_BIN={NTK_BIN} is not an executable")
        pytest.skip(f"ntk binary not found at {NTK_BIN}: build the `ntk` target "
                    "(cmake --build build --target ntk) or point NTK_BIN at it")
    return NTK_BIN


def nt_python_checked(helper: Path) -> Path:
    """NT_PYTHON once `helper --check` (a tests/python/nt_*.py script) imports what it needs from
    neural-tangents; skips otherwise (scripts/test.sh then fails unless PyPI was unreachable)."""
    if not NT_PYTHON.is_file():
        pytest.skip(f"neural-tangents venv not found ({NT_PYTHON}): run scripts/install-nt.sh")
    r = subprocess.run([str(NT_PYTHON), str(helper), "--check"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"{NT_PYTHON} cannot import neural-tangents for {helper.name} (rerun scripts/install-nt.sh): "
                    f"{(r.stderr.strip().splitlines() or [f'exit {r.returncode}'])[-1]}")
    return NT_PYTHON
