"""Agent versions on Kafka: the workers' member metadata carries the versions they host, so
a version-2 worker joining a version-1 worker leaves it the partitions of its waiting runs,
takes the others (new runs there are version 2), gets a partition once the old run there
ended, and a run left with no live worker of its version is listed as orphaned."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from version_fleet import ALL, VersionWorker, asked, at_gate, finish, run_id_on, version_of

from wakeline.client import Client
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.kafka_broker import KafkaBroker
from wakeline.topics.specs import prefixed_topics

pytestmark = pytest.mark.kafka


async def test_versions_on_kafka(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    prefix = f"versions-{uuid.uuid4().hex[:8]}"
    kafka = (kafka_broker.bootstrap, prefix)
    client = await Client.open(
        kafka=kafka_broker.bootstrap, topics=prefixed_topics(prefix), views_dir=tmp_path / "v"
    )
    workers: list[VersionWorker] = []
    with FakeLLMServer() as server:
        try:
            await client.create_topics(partitions=len(ALL))
            old = await VersionWorker.spawn(tmp_path, server, "v1()", "old", kafka=kafka)
            workers.append(old)
            await old.owns(ALL)
            done = (await client.start_run("summarize", "kelp", run_id=run_id_on({0}))).run_id
            left = (await client.start_run("summarize", "moss", run_id=run_id_on({1}))).run_id
            for run_id in (done, left):
                await at_gate(client, run_id, "start")

            new = await VersionWorker.spawn(tmp_path, server, "v2()", "new", kafka=kafka)
            workers.append(new)
            await new.owns({2, 3})
            await old.owns({0, 1})
            fresh = await client.start_run("summarize", "ferns", run_id=run_id_on({2, 3}))
            events = await finish(client, fresh.run_id)
            assert version_of(events) == "2" and {e.writer for e in events} == {new.worker_id}

            events = await finish(client, done)  # its partition's last old run ends ...
            assert asked(server, "kelp") == [("old", "Summarize kelp.")]
            await new.owns({0, 2, 3})  # ... and the partition moves to the new version
            await old.owns({1})

            await old.stop()
            await new.owns(ALL)
            await new.until(lambda w: any(f"run {left} left untouched" in x for x in w.lines))
            row = await client.get(left)
            assert row is not None and row.orphaned and row.version == "1"
        finally:
            for worker in workers:
                await worker.stop()
            await client.aclose()
