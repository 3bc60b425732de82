"""docs/python-api.md says its examples are doctests that check every output shown: this runs
them, so the page cannot drift from what the API prints (it had, once: the summary rows and
``get_layer(index=-1)`` were left in the file's order when the layers took Keras's)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_python_api_page_examples():
    # In a process of its own: the page shows Keras's automatic names (dense, conv2d), which
    # count up per process, so layers made by other tests would rename its layers.
    page = ROOT / "docs" / "python-api.md"
    assert page.read_text(encoding="utf-8").count("\n>>> ") > 100  # the examples are there to run
    command = [sys.executable, "-m", "doctest", str(page)]
    r = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
