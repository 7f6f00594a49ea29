"""A start may name the agent version it wants: ``wakeline start --agent-version V`` and
``POST /v1/runs`` with ``"version"`` pin it on a worker hosting several versions side by side;
a version no worker hosts is refused with a notice (the run never starts) and the worker
goes on serving."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from test_dashboard_browser import OPERATOR, OPERATOR_SECRET
from version_fleet import (
    ALL,
    VersionWorker,
    at_gate,
    cli_process,
    finish,
    opened,  # noqa: F401  (the fixture ``fleet``)
    version_of,
)

from wakeline.api import KeyRing, create_app
from wakeline.api.serve import serving
from wakeline.client import Client, RunError
from wakeline.testing.fake_llm import FakeLLMServer


async def test_a_start_pins_the_version_from_the_cli_and_over_http(
    fleet: tuple[Path, Client, FakeLLMServer], tmp_path: Path
) -> None:
    data, client, server = fleet
    worker = await VersionWorker.spawn(data, server, "both()", "both")
    api = create_app(
        client.log,
        state_dir=tmp_path / "api",
        keys=KeyRing.from_specs([f"ops:operator:{OPERATOR_SECRET}"]),
        poll_s=0.05,
    )
    try:
        await worker.owns(ALL)
        code, out = await cli_process(
            data, "start", "summarize", "--input", '"kelp"', "--agent-version", "1"
        )
        assert code == 0, out
        by_cli = out.strip().splitlines()[-1]
        async with (
            api.router.lifespan_context(api),
            serving(api) as base,
            httpx.AsyncClient(base_url=base, headers=OPERATOR) as http,
        ):
            posted = {}
            for version in ("1", "2", ""):
                body = {"agent": "summarize", "input": "kelp", "version": version}
                r = await http.post("/v1/runs", json=body)
                assert r.status_code == 202, r.text
                posted[version] = r.json()["run_id"]
            body = {"agent": "summarize", "input": "kelp", "version": "7"}
            r = await http.post("/v1/runs", json=body)
            assert r.status_code == 202, r.text  # hosted or not is the workers' call
            with pytest.raises(RunError, match="version '7' of agent 'summarize' is not hosted"):
                await client.result(r.json()["run_id"])
        for run_id in (by_cli, *posted.values()):
            await at_gate(client, run_id, "start")
        versions = [version_of(await finish(client, r)) for r in (by_cli, *posted.values())]
        assert versions == ["1", "1", "2", "2"]  # no version: the worker's highest
    finally:
        await worker.stop()
