"""Files wakeline creates for itself: readable only by their owner."""

from __future__ import annotations

from pathlib import Path

__all__ = ["private_dir"]

PRIVATE_DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents with mode 0700 (journals, state and logs hold
    the runs' prompts and results); directories that exist already are left as they are."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    return path
