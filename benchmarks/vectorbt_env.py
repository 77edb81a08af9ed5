"""The separate virtualenv vectorbt runs in: ``benchmarks/.venv-vectorbt`` (gitignored).

vectorbt >= 1.1 requires pandas >= 3 while dagster-duckdb-pandas requires pandas < 3, so
the two cannot share the project's venv. The first call creates it with this interpreter's
``-m venv`` (Python 3.11, like the project) and ``pip install vectorbt==VERSION`` (~1.5 min
here; pip resolved pandas 3.1.1 and numba 0.68.1 with it); a marker file written after a
successful install makes later calls free, and a half-finished install is redone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-vectorbt"
VERSION = "1.2.0"
MARKER = VENV / f".installed-vectorbt-{VERSION}"


def python() -> Path:
    """The venv's interpreter, creating the venv first if needed."""
    exe = VENV / "bin" / "python"
    if MARKER.exists():
        return exe
    print(f"creating {VENV} with vectorbt=={VERSION} (first run only) ...", flush=True)
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(exe), "-m", "pip", "install", "--quiet", f"vectorbt=={VERSION}"], check=True
    )
    MARKER.touch()
    return exe
