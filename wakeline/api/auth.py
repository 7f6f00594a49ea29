"""API keys with roles: ``viewer`` < ``operator`` < ``approver``.

A key is ``NAME:ROLE:SECRET`` (from ``--api-key`` or ``$WAKELINE_API_KEYS``, comma-separated).
Only the sha256 digest of a secret is kept in memory; a presented secret is hashed and compared
with every stored digest with :func:`hmac.compare_digest`.  The key's *name* (never its secret)
identifies the caller: it is the ``issuer`` of the commands the API publishes.

Secrets have at least 32 characters.  Requests authenticate with ``Authorization: Bearer
<secret>``, or ``?key=<secret>`` on the event streams only, for the dashboard's ``EventSource``
(which cannot send headers; the server's access log redacts it).  The key is checked before the
body is read, by :class:`~wakeline.api.guard.AuthMiddleware`.

Routes declare the least role they need with :func:`require`::

    @router.post("/v1/runs/{run_id}/gates/{gate}/approve")
    async def approve(..., who: Principal = Depends(require(Role.APPROVER))) -> ...
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from wakeline.api.errors import ApiError

KEYS_ENV = "WAKELINE_API_KEYS"
MIN_SECRET_CHARS = 32
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


class Role(IntEnum):
    """Each role can do everything the roles below it can."""

    VIEWER = 1
    """Reads runs, steps, events and costs."""
    OPERATOR = 2
    """Also starts, cancels and resumes runs, and raises their budgets."""
    APPROVER = 3
    """Also approves and rejects gates, and resolves in-doubt tool calls."""

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            known = ", ".join(r.name.lower() for r in cls)
            raise ValueError(f"unknown role {text!r} (roles: {known})") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: the key's name and role."""

    name: str
    role: Role


class KeyRing:
    """The API keys a server accepts: name, role and the sha256 digest of the secret."""

    def __init__(self) -> None:
        self._keys: list[tuple[bytes, Principal]] = []

    def add(self, name: str, role: Role | str, secret: str) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"bad API key name {name!r}: 1-64 of letters, digits, '_', '.', '@', '-'"
            )
        if any(p.name == name for _, p in self._keys):
            raise ValueError(f"API key name {name!r} is given twice")
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(
                f"the secret of API key {name!r} has {len(secret)} characters; at least "
                f"{MIN_SECRET_CHARS} are required (e.g. `openssl rand -hex 32`)"
            )
        digest = _digest(secret)
        if any(hmac.compare_digest(digest, d) for d, _ in self._keys):
            raise ValueError(f"API key {name!r} has the same secret as another key")
        role = role if isinstance(role, Role) else Role.parse(role)
        self._keys.append((digest, Principal(name, role)))

    def add_spec(self, spec: str) -> None:
        """Add ``NAME:ROLE:SECRET`` (the secret may itself contain ``:``)."""
        parts = spec.strip().split(":", 2)
        if len(parts) != 3 or not all(parts):  # never echo the text: it may be a secret
            raise ValueError("an API key is not of the form NAME:ROLE:SECRET")
        name, role, secret = parts
        self.add(name, role, secret)

    @classmethod
    def from_specs(cls, specs: Iterable[str], env: str | None = None) -> KeyRing:
        """Keys from ``NAME:ROLE:SECRET`` specs, plus the comma-separated ``env`` value."""
        ring = cls()
        for spec in specs:
            ring.add_spec(spec)
        for spec in (env or "").split(","):
            if spec.strip():
                ring.add_spec(spec)
        return ring

    def authenticate(self, secret: str) -> Principal | None:
        """The key whose secret this is, or ``None``.  Compares against every key."""
        digest = _digest(secret)
        found: Principal | None = None
        for stored, principal in self._keys:
            if hmac.compare_digest(digest, stored):
                found = principal
        return found

    def names(self) -> list[tuple[str, Role]]:
        return [(p.name, p.role) for _, p in self._keys]

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:  # never shows digests
        keys = ", ".join(f"{p.name}:{p.role.label}" for _, p in self._keys)
        return f"KeyRing({keys})"


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <secret>`")
_query_key = APIKeyQuery(
    name="key", auto_error=False, description="An API key, for EventSource (no headers)"
)

PRINCIPAL = "wakeline.principal"
"""Where :class:`~wakeline.api.guard.AuthMiddleware` puts the caller in the scope's state."""


def keyring_of(request: Request) -> KeyRing:
    ring: KeyRing = request.app.state.keys
    return ring


def require(role: Role, *, query_key: bool = False) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: the caller's :class:`Principal`, at least ``role``.

    The key was checked by :class:`~wakeline.api.guard.AuthMiddleware` before the body was
    read (401 without a key or with an unknown one); here: 403 when its role is below
    ``role``.  ``query_key``: the route documents ``?key=`` (the event streams).
    """

    async def check(request: Request) -> Principal:
        principal = request.scope.get("state", {}).get(PRINCIPAL)
        if not isinstance(principal, Principal):  # an app without the middleware
            raise ApiError(401, "an API key is required", headers=CHALLENGE)
        if principal.role < role:
            raise ApiError(
                403,
                f"key {principal.name!r} has role {principal.role.label}; this needs {role.label}",
            )
        return principal

    async def dependency(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        return await check(request)

    async def stream_dependency(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        __: Annotated[str | None, Depends(_query_key)],
    ) -> Principal:
        return await check(request)

    chosen = stream_dependency if query_key else dependency
    chosen.__name__ = f"require_{role.label}"
    return chosen


CHALLENGE = {"WWW-Authenticate": "Bearer"}


ViewerKey = Annotated[Principal, Depends(require(Role.VIEWER))]
StreamViewerKey = Annotated[Principal, Depends(require(Role.VIEWER, query_key=True))]
"""For the event streams, which also take ``?key=`` (for ``EventSource``)."""
OperatorKey = Annotated[Principal, Depends(require(Role.OPERATOR))]
ApproverKey = Annotated[Principal, Depends(require(Role.APPROVER))]
"""For gate routes, e.g. ``POST /v1/runs/{run_id}/gates/{gate}/approve``."""

AUTH_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"description": "no API key, or an unknown one (checked before the body is read)"},
    403: {"description": "the key's role is too small"},
    429: {"description": "too many failed authentications from this address (Retry-After)"},
}
