"""How agent versions compare: numeric-aware, so ``"10"`` is after ``"9"`` and ``"1.10"`` after
``"1.9"``; the unversioned ``""`` comes before every version.  Shared by the app (a start with
no version takes the highest one a worker hosts) and the group assignment (a worker hosting a
lower version of an agent than another live worker takes no new partitions)."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+)")

VersionKey = tuple[tuple[int, int, str], ...]


def version_key(version: str) -> VersionKey:
    """A sort key: digit runs compare as numbers (before text), text parts as text."""
    parts = (p for p in _PART.split(version) if p)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def highest(versions: list[str]) -> str:
    """The highest of ``versions`` (``ValueError`` if empty)."""
    return max(versions, key=version_key)
