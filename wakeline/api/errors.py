"""Errors as ``{"detail": "<message>"}`` with a 4xx status, and the request body size limit."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wakeline.api.headers import SECURITY_HEADERS
from wakeline.topics.port import LogError, RecordTooLargeError, UnknownTopicError

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class ApiError(Exception):
    """An error answered as ``{"detail": detail, **extra}`` with ``status``."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra


def error_response(
    status: int, detail: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status, headers=headers)


def describe_errors(errors: list[Any]) -> list[dict[str, Any]]:
    """Pydantic errors, JSON-safe and without the offending input (it may be large)."""
    out: list[dict[str, Any]] = []
    for error in errors:
        loc = [part if isinstance(part, int | str) else str(part) for part in error.get("loc", ())]
        out.append({"loc": loc, "msg": str(error.get("msg", "")), "type": str(error.get("type"))})
    return out


def summarize(errors: list[dict[str, Any]], limit: int = 3) -> str:
    parts = [f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in errors[:limit]]
    more = len(errors) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.detail, exc.headers, **exc.extra)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    raw = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in raw):
        first = raw[0].get("ctx", {}).get("error", "JSON decode error")
        return error_response(400, f"the request body is not valid JSON: {first}")
    errors = describe_errors(raw)
    return error_response(422, f"invalid request: {summarize(errors)}", errors=errors)


async def _log_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LogError)
    if isinstance(exc, RecordTooLargeError):
        return error_response(413, f"the command is too large for the log: {exc}")
    if isinstance(exc, UnknownTopicError):
        return error_response(503, f"{exc}; run `wakeline topics create`")
    return error_response(503, f"the log is unavailable: {exc}")


async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
    """A 500 (answered outside the middleware, so the security headers are added here)."""
    return error_response(500, f"internal error: {type(exc).__name__}", SECURITY_HEADERS)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Exception, _internal_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(LogError, _log_error)


class BodyLimitMiddleware:
    """Reads a request body up to ``max_bytes`` before the app sees it: 413 beyond.

    A ``Content-Length`` over the limit is refused at once; a chunked body is counted as it
    arrives.  The app then receives the whole body as one message.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"the request body exceeds the limit of {self.max_bytes} bytes"
        response = JSONResponse({"detail": detail}, status_code=413)
        response.headers["connection"] = "close"
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def json_safe(text: str) -> bool:
    """``text`` can be encoded as UTF-8 (no lone surrogates, which JSON allows)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def canonical_input(value: Any) -> str:
    """Canonical JSON text of an input; ``ValueError`` for NaN, infinities, lone surrogates."""
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    if not json_safe(text):
        raise ValueError("strings must be valid Unicode (no lone surrogates)")
    return text
