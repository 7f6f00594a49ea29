"""What workers announce to their group, and the partition assignment that follows from it.

Each worker announces a :class:`Hosting`: the ``(agent, version)`` pairs its app hosts and,
for each partition it owns, the pairs its open runs need.  From the announcements of the live
members every member computes the same assignment (:func:`assignment`):

* members that all host the same pairs (or announce nothing) get Kafka's range assignment, as
  before versions existed;
* otherwise a member is *behind* when another live member hosts a higher version of an agent
  it hosts; a partition goes to a member hosting every pair its open runs need (its current
  owner if that one does: in-flight runs stay where they are), else to the members hosting
  the most of them; among those, members that are not behind first, then the least loaded.

So when a new version's workers join, partitions whose runs need the old version stay on the
old version's workers until those runs end, and every other partition (where new runs start)
goes to the new workers.  Versions are ordered by
:func:`~wakeline.schemas.versions.version_key`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from wakeline.schemas.versions import version_key

Pair = tuple[str, str]
"""``(agent, version)``."""

WORKER_GROUP = "wakeline-workers"
"""The workers' default consumer group (whose announcements the views read)."""


@dataclass(frozen=True, slots=True)
class Hosting:
    hosts: frozenset[Pair]
    needs: Mapping[int, frozenset[Pair]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "hosts": sorted(self.hosts),
                "needs": {str(p): sorted(n) for p, n in sorted(self.needs.items()) if n},
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Hosting:
        value = json.loads(text)
        hosts = frozenset((str(a), str(v)) for a, v in value.get("hosts", ()))
        needs = {
            int(p): frozenset((str(a), str(v)) for a, v in pairs)
            for p, pairs in dict(value.get("needs", {})).items()
        }
        return cls(hosts, needs)


class HostingSource(Protocol):
    """Implemented by the worker: what it announces at each membership round."""

    def hosting(self) -> Hosting: ...


def range_assignment(members: Sequence[str], partitions: int, member_id: str) -> frozenset[int]:
    """Kafka's range assignor over sorted ``members``: contiguous blocks, earlier ones larger."""
    if member_id not in members:
        return frozenset()
    index = list(members).index(member_id)
    each, extra = divmod(partitions, len(members))
    start = index * each + min(index, extra)
    return frozenset(range(start, start + each + (1 if index < extra else 0)))


def assignment(
    members: Sequence[str],
    hosting: Mapping[str, Hosting],
    owners: Mapping[int, str],
    partitions: int,
) -> dict[int, str]:
    """The owner each partition should have; see the module docstring."""
    members = sorted(members)
    if len({hosting[m].hosts if m in hosting else None for m in members}) <= 1:
        return {p: m for m in members for p in range_assignment(members, partitions, m)}
    ahead = {m for m in members if not _behind(m, members, hosting)} or set(members)
    load = dict.fromkeys(members, 0)
    out: dict[int, str] = {}
    for partition in range(partitions):
        owner = owners.get(partition)
        announced = hosting.get(owner) if owner is not None else None
        need = announced.needs.get(partition, frozenset()) if announced else frozenset()
        chosen = _choose(need, owner, members, ahead, hosting, load)
        out[partition] = chosen
        load[chosen] += 1
    return out


def _choose(
    need: frozenset[Pair],
    owner: str | None,
    members: Sequence[str],
    ahead: set[str],
    hosting: Mapping[str, Hosting],
    load: Mapping[str, int],
) -> str:
    def covered(member: str) -> int:
        announced = hosting.get(member)
        return len(need) if announced is None else len(need & announced.hosts)

    best = max(covered(m) for m in members)
    candidates = [m for m in members if covered(m) == best]
    if need and owner in candidates:
        return owner
    preferred = [m for m in candidates if m in ahead] or candidates
    return min(preferred, key=lambda m: (load[m], m))


def _behind(member: str, members: Sequence[str], hosting: Mapping[str, Hosting]) -> bool:
    mine = hosting.get(member)
    if mine is None:
        return False
    tops = _highest(mine.hosts)
    for other in members:
        theirs = hosting.get(other)
        if other == member or theirs is None:
            continue
        for agent, top in _highest(theirs.hosts).items():
            if agent in tops and version_key(top) > version_key(tops[agent]):
                return True
    return False


def _highest(hosts: frozenset[Pair]) -> dict[str, str]:
    tops: dict[str, str] = {}
    for agent, version in hosts:
        if agent not in tops or version_key(version) > version_key(tops[agent]):
            tops[agent] = version
    return tops
