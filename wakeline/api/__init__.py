"""``wakeline serve``: an HTTP API (FastAPI) and a web dashboard, beside the workers.

Needs the ``api`` extra (``pip install 'wakeline[api]'``).
"""

from __future__ import annotations

from wakeline.api.app import create_app
from wakeline.api.auth import KEYS_ENV, KeyRing, Principal, Role, require

__all__ = ["KEYS_ENV", "KeyRing", "Principal", "Role", "create_app", "require"]
