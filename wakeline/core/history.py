"""Conversations journaled in O(N): a model request as the messages it appends to an earlier one.

An agent that keeps a chat resends its whole history on every call.  Journaled whole, the
requests of an N-turn chat hold O(N^2) bytes.  Instead, :class:`Conversations` (one per run,
fed by the agent's own calls, so replay rebuilds it exactly) finds the longest earlier message
list the new request starts with -- an earlier request's messages, or those followed by the
reply that request got -- and the request is journaled as a reference to that step
(``base_seq``, ``base_reply``) plus the messages after it.  The request digest is still the
digest of the whole request, so a step's replay identity does not change.

:func:`expand_requests` reads a journal back into whole requests.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from wakeline import jsonutil
from wakeline.schemas.events import Event, ModelCallCompleted, ModelCallRequested


@dataclass(frozen=True, slots=True)
class Base:
    """Where a request's messages start: those of the request at ``seq`` (and its reply)."""

    seq: int
    reply: bool
    chars: int  # how many leading characters of the new request's messages text it covers


@dataclass(frozen=True, slots=True)
class _Listed:
    """A recorded message list, by its JSON text without the closing bracket (``[m1,m2``)."""

    chars: int
    tail: str  # its last characters: a cheap first check
    sha: Any  # hashlib state after that text, to hash it extended by a reply
    seq: int
    reply: bool


_RECENT = 16  # recorded lists a new request is compared with, newest first
_TAIL = 32


class Conversations:
    """The message lists a run's latest model requests (and their replies) ended with.

    A new request is compared with the newest recorded lists only (a chat extends its last
    exchange; a few chats may interleave); each comparison is one string check and, when
    that matches, one sha256 of the prefix: O(request) work, like the request's digest.
    """

    def __init__(self) -> None:
        self._recent: collections.deque[_Listed] = collections.deque(maxlen=_RECENT)
        self._open: dict[int, _Listed] = {}  # seq of a request waiting for its reply

    def base_of(self, messages_text: str) -> Base | None:
        """The longest recent list ``messages_text`` (canonical JSON) starts with, if any."""
        best: Base | None = None
        for listed in self._recent:
            n = listed.chars
            if n >= len(messages_text) or messages_text[n] not in ",]":
                continue
            if best is not None and n <= best.chars:
                continue
            if messages_text[n - len(listed.tail) : n] != listed.tail:
                continue
            if hashlib.sha256(messages_text[:n].encode()).digest() != listed.sha.digest():
                continue
            best = Base(listed.seq, listed.reply, n)
        return best

    def requested(self, seq: int, messages_text: str) -> None:
        """A request whose messages are ``messages_text`` was journaled at ``seq``."""
        text = messages_text[:-1]
        listed = _Listed(len(text), text[-_TAIL:], hashlib.sha256(text.encode()), seq, False)
        self._recent.appendleft(listed)
        self._open[seq] = listed

    def replied(self, seq: int, message: Mapping[str, Any]) -> None:
        """The request at ``seq`` got ``message`` back."""
        asked = self._open.pop(seq, None)
        if asked is None:
            return
        tail_text = ("," if asked.chars > 1 else "") + jsonutil.dumps(message)  # "[": none yet
        sha = asked.sha.copy()
        sha.update(tail_text.encode())
        tail = (asked.tail + tail_text)[-_TAIL:]
        chars = asked.chars + len(tail_text)
        self._recent.appendleft(_Listed(chars, tail, sha, seq, True))


def with_messages(request: Mapping[str, Any], messages_text: str) -> str:
    """The canonical JSON text of ``request`` with ``messages_text`` as its messages (the
    same text ``jsonutil.dumps`` gives, without encoding the messages again)."""
    head = jsonutil.dumps({**request, "messages": []})
    return head.replace('"messages":[]', f'"messages":{messages_text}', 1)


def after(messages_text: str, base: Base) -> str:
    """The messages text of what a request appends to its ``base``."""
    rest = messages_text[base.chars + 1 :]
    return "[" + rest if rest else "[]"


class RequestHistoryError(ValueError):
    """A journaled request refers to a step that is not a model request of the run."""


def expand_requests(events: Iterable[Event]) -> dict[int, dict[str, Any]]:
    """Every model request of one run's journal, whole, by seq (as the agent sent it:
    ``jsonutil.digest(jsonutil.dumps(request))`` is the event's ``request_digest``)."""
    whole: dict[int, dict[str, Any]] = {}
    replies: dict[int, Any] = {}
    for event in events:
        payload = event.payload
        if isinstance(payload, ModelCallCompleted):
            replies[payload.step] = jsonutil.loads(payload.message)
        elif isinstance(payload, ModelCallRequested):
            whole[event.seq] = _expand(payload, whole, replies, event.seq)
    return whole


def _expand(
    payload: ModelCallRequested,
    whole: Mapping[int, dict[str, Any]],
    replies: Mapping[int, Any],
    seq: int,
) -> dict[str, Any]:
    request: dict[str, Any] = jsonutil.loads(payload.request)
    if payload.base_seq < 0:
        return request
    base = whole.get(payload.base_seq)
    if base is None or (payload.base_reply and payload.base_seq not in replies):
        raise RequestHistoryError(f"the request at seq {seq} extends seq {payload.base_seq}")
    prefix = list(base["messages"])
    if payload.base_reply:
        prefix.append(replies[payload.base_seq])
    return {**request, "messages": prefix + request["messages"]}
