"""Authentication before anything else: :class:`AuthMiddleware`, a pure ASGI middleware.

Every request under ``/v1/`` must present an API key; the middleware checks it from the
request line and headers alone and answers 401 (or 429) *without reading the body*, so a
keyless client cannot make the server receive or parse what it posts.  A known key's
:class:`~wakeline.api.auth.Principal` is put in the request's scope state, where the routes'
role checks (:func:`wakeline.api.auth.require`) find it.

``?key=<secret>`` is accepted only by the event streams (``GET /v1/runs/{run_id}/events``:
``EventSource`` cannot send headers); anywhere else it is refused, so keys stay out of URLs.

Failed authentications are limited per client address by a token bucket
(:class:`FailureLimiter`): beyond the burst, the address gets 429 with ``Retry-After``.  A
correct key is always let through, so other clients' failures -- even from the same address,
e.g. behind one proxy -- never slow it down.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from wakeline.api.auth import CHALLENGE, PRINCIPAL, KeyRing
from wakeline.api.errors import error_response

PROTECTED = "/v1/"
STREAM_PATH = re.compile(r"^/v1/runs/[^/]+/events$")
"""The routes that accept ``?key=``: Server-Sent Events, for ``EventSource``."""


class FailureLimiter:
    """A token bucket of failed authentications per client address: ``burst`` failures at
    once, refilled at ``per_s`` a second.  At most ``max_clients`` addresses are remembered
    (the least recently failing are forgotten first)."""

    def __init__(
        self,
        *,
        burst: int = 20,
        per_s: float = 1.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.per_s = per_s
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _tokens(self, client: str, now: float) -> float:
        tokens, at = self._buckets.get(client, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.per_s)

    def retry_after_s(self, client: str) -> int:
        """0 when ``client`` may fail once more, else the seconds until it may."""
        tokens = self._tokens(client, self._clock())
        return 0 if tokens >= 1 else max(1, math.ceil((1 - tokens) / self.per_s))

    def failed(self, client: str) -> None:
        now = self._clock()
        self._buckets[client] = (self._tokens(client, now) - 1, now)
        self._buckets.move_to_end(client)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)


class AuthMiddleware:
    """Authenticates ``/v1/`` requests from their headers; see the module's docstring."""

    def __init__(self, app: ASGIApp, keys: KeyRing, limiter: FailureLimiter | None = None):
        self.app = app
        self.keys = keys
        self.limiter = limiter or FailureLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED):
            await self.app(scope, receive, send)
            return
        secret, refusal = _presented(scope)
        principal = self.keys.authenticate(secret) if secret else None
        if principal is not None:
            scope.setdefault("state", {})[PRINCIPAL] = principal
            await self.app(scope, receive, send)
            return
        client = scope["client"][0] if scope.get("client") else "unknown"
        wait_s = self.limiter.retry_after_s(client)
        if wait_s:
            detail = f"too many failed authentications from {client}; retry in {wait_s} s"
            response = error_response(429, detail, {"Retry-After": str(wait_s)})
        else:
            self.limiter.failed(client)
            detail = refusal or ("invalid API key" if secret else "an API key is required")
            response = error_response(401, detail, CHALLENGE)
        response.headers["connection"] = "close"  # the body is left unread
        await response(scope, receive, send)


def _presented(scope: Scope) -> tuple[str | None, str | None]:
    """The secret the request presents, or why its way of presenting one is refused."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not credentials.strip():
                return None, "send the API key as `Authorization: Bearer <key>`"
            if "key" in query:
                return None, "send the API key either in the header or as ?key=, not both"
            return credentials.strip(), None
    if "key" not in query:
        return None, None
    if scope["method"] != "GET" or not STREAM_PATH.match(scope["path"]):
        refusal = (
            "?key= is accepted only by the event streams (GET /v1/runs/{run_id}/events); "
            "send the API key as `Authorization: Bearer <key>`"
        )
        return None, refusal
    return query["key"][-1], None
