"""The log and the projection store the projection tests fold into."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from projection_scenario import open_log

from wakeline.projections.store import ProjectionStore
from wakeline.topics.embedded.log import EmbeddedLog


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[EmbeddedLog]:
    opened = await open_log(tmp_path / "log")
    yield opened
    await opened.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ProjectionStore]:
    with ProjectionStore(tmp_path / "proj") as opened:
        yield opened
