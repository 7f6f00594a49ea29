"""An assignment listener for consumer tests: it records every call, in order."""

from __future__ import annotations


class CallLog:
    def __init__(self) -> None:
        self.calls: list[tuple[str, frozenset[int]]] = []

    async def on_assigned(self, partitions: frozenset[int]) -> None:
        self.calls.append(("assigned", partitions))

    async def on_revoked(self, partitions: frozenset[int]) -> None:
        self.calls.append(("revoked", partitions))

    def assigned(self) -> int:
        """How many times ``on_assigned`` was called."""
        return sum(1 for kind, _ in self.calls if kind == "assigned")
