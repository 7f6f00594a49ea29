"""Projections: state folded from the log into RocksDB (:mod:`rocksdict`).

The log is the only source of truth.  A projection store can be deleted at any time and rebuilt
from offset 0 (:func:`wakeline.projections.rebuild.rebuild`).  Every fold writes the state it
produced *and* the next offset of every partition it read in one RocksDB ``WriteBatch``, so the
state and the offsets it reflects never disagree, whatever the moment of a crash.

Projections name the topics they read *logically* (``"events"``, ``"notices"``, ``"ledger"``); a
``topic_names`` mapping turns those into the physical topic names of a deployment.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from wakeline.topics.specs import DEFAULT_TOPICS

EVENTS = "events"
"""Logical name of the events topic (run journals, key = run id)."""

NOTICES = "notices"
"""Logical name of the notices topic (drift, rejected commands; key = run id)."""

LEDGER = "ledger"
"""Logical name of the budget ledger topic (:mod:`wakeline.ledger`; key = ledger key)."""

# the default physical names of those topics: wakeline.topics.specs names every topic
EVENTS_TOPIC = DEFAULT_TOPICS.events
NOTICES_TOPIC = DEFAULT_TOPICS.notices
LEDGER_TOPIC = DEFAULT_TOPICS.ledger

DEFAULT_TOPIC_NAMES: Mapping[str, str] = MappingProxyType(
    {EVENTS: EVENTS_TOPIC, NOTICES: NOTICES_TOPIC, LEDGER: LEDGER_TOPIC}
)
"""Logical topic name -> physical topic name."""

__all__ = [
    "DEFAULT_TOPIC_NAMES",
    "EVENTS",
    "EVENTS_TOPIC",
    "LEDGER",
    "LEDGER_TOPIC",
    "NOTICES",
    "NOTICES_TOPIC",
]
