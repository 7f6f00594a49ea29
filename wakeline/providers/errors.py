"""What the SDK providers share about errors: which exceptions are transport failures, and a
message that says where the call went and what to check, journaled with the failed call."""

from __future__ import annotations

from wakeline.core.model import ProviderError

_TRANSPORT_MODULES = {"httpx", "httpx2", "httpcore", "httpcore2", "h11", "anyio"}


def is_transport_error(exc: BaseException) -> bool:
    """A dropped connection or read timeout raised raw by the HTTP stack while streaming."""
    module = type(exc).__module__.split(".", 1)[0]
    return module in _TRANSPORT_MODULES or isinstance(exc, (OSError, TimeoutError))


def explained(
    error: ProviderError, base_url: str, *, connection: bool, v1: bool = False
) -> ProviderError:
    """``error`` (same class, same status) with the base URL and what to check added; ``v1``:
    the server's API lives under ``/v1`` of the base URL (OpenAI-compatible servers)."""
    hint = _hint(error.status_code, connection, base_url, v1)
    message = f"{error} [{base_url}]" + (f": {hint}" if hint else "")
    out = type(error)(message, status_code=error.status_code)
    out.__cause__ = error.__cause__
    return out


def _hint(status: int | None, connection: bool, base_url: str, v1: bool) -> str:
    if connection:
        return f"is the server running and reachable at {base_url}?"
    if status in (401, 403):
        return "check the API key (and that it may use this model)"
    if status == 404:
        tail = ""
        if v1 and not base_url.rstrip("/").endswith("/v1"):
            tail = " (an OpenAI-compatible server wants it to end in /v1)"
        return f"check the base URL{tail} and that the server knows the model name"
    return ""
