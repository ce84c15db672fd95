"""Golden-file comparison: rendered markdown must match tests/golden/NAME byte for byte.

Run with REVIEWBOT_UPDATE_GOLDEN=1 to rewrite the files after an intended change, then
read the diff before committing it.
"""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN_DIR = Path(__file__).parent / "golden"


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN_DIR / name
    if os.environ.get("REVIEWBOT_UPDATE_GOLDEN") == "1" or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if os.environ.get("CI"):
            raise AssertionError(f"golden file {name} was missing; it must be committed")
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"
