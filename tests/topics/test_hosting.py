"""The version-aware group assignment (:mod:`wakeline.topics.hosting`): a homogeneous fleet
keeps Kafka's range assignment; when a newer version's worker joins, partitions whose open
runs need the old version stay on the old worker and the rest go to the new one."""

from __future__ import annotations

from wakeline.topics.hosting import Hosting, assignment, range_assignment

V1 = frozenset({("summarize", "1")})
V2 = frozenset({("summarize", "2")})
BOTH = V1 | V2


def test_a_homogeneous_fleet_gets_the_range_assignment() -> None:
    members = ["a", "b"]
    hosting = {"a": Hosting(V1, {0: V1}), "b": Hosting(V1)}
    got = assignment(members, hosting, {0: "a", 1: "a", 2: "a", 3: "a"}, 4)
    expected = {p: m for m in members for p in range_assignment(members, 4, m)}
    assert got == expected == {0: "a", 1: "a", 2: "b", 3: "b"}
    assert assignment(members, {}, {}, 4) == expected  # nobody announces: as before


def test_old_runs_keep_their_partitions_and_the_rest_goes_to_the_new_version() -> None:
    old = Hosting(V1, {1: V1, 3: V1})  # open v1 runs on partitions 1 and 3
    got = assignment(
        ["old", "new"], {"old": old, "new": Hosting(V2)}, dict.fromkeys(range(4), "old"), 4
    )
    assert got == {0: "new", 1: "old", 2: "new", 3: "old"}
    drained = Hosting(V1)  # its runs ended: the old worker is behind, it takes nothing
    got = assignment(["old", "new"], {"old": drained, "new": Hosting(V2)}, got, 4)
    assert set(got.values()) == {"new"}


def test_a_worker_hosting_both_versions_leaves_old_runs_where_they_are() -> None:
    owners = dict.fromkeys(range(4), "old")
    hosting = {"old": Hosting(V1, {2: V1}), "new": Hosting(BOTH)}
    got = assignment(["old", "new"], hosting, owners, 4)
    assert got == {0: "new", 1: "new", 2: "old", 3: "new"}


def test_runs_nobody_here_can_drive_go_to_a_worker_that_hosts_them() -> None:
    owners = dict.fromkeys(range(2), "new")  # the old worker died; the new one got everything
    hosting = {"new": Hosting(V2, {1: V1}), "old": Hosting(V1)}
    got = assignment(["new", "old"], hosting, owners, 2)
    assert got == {0: "new", 1: "old"}


def test_announcements_survive_json() -> None:
    hosting = Hosting(BOTH, {3: V1, 4: frozenset()})
    again = Hosting.from_json(hosting.to_json())
    assert again.hosts == BOTH and dict(again.needs) == {3: V1}
