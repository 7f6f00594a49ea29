"""Canonical JSON: one byte-exact text per value, so digests and replays compare exactly."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def dumps(value: Any) -> str:
    """Canonical JSON text: sorted keys, no insignificant whitespace, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def loads(text: str) -> Any:
    return json.loads(text)


def digest(text: str) -> str:
    """sha256 hex of a canonical JSON text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
