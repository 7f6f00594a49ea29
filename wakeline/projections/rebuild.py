"""Rebuild a projection store from offset 0 of the log (``wakeline projections rebuild``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from wakeline.projections.runner import DEFAULT_CHUNK, catch_up
from wakeline.projections.store import Projection, ProjectionStore
from wakeline.topics.port import Log
from wakeline.topics.signing import RecordSigner


def _is_store_dir(path: Path) -> bool:
    """Whether ``path`` is a RocksDB directory (or empty), so that deleting it is safe."""
    return (path / "CURRENT").exists() or not any(path.iterdir())


def remove_store(path: str | Path) -> None:
    """Delete the projection store at ``path`` (nothing if it does not exist).

    Refuses (``ValueError``) to delete a non-empty directory that is not a RocksDB database.
    The store must not be open, in this process or another.
    """
    target = Path(path)
    if not target.exists():
        return
    if not target.is_dir() or not _is_store_dir(target):
        raise ValueError(f"{target} is not a projection store; not deleting it")
    ProjectionStore.destroy(target)
    shutil.rmtree(target, ignore_errors=True)


async def rebuild(
    log: Log,
    path: str | Path,
    projections: Sequence[Projection],
    *,
    topic_names: Mapping[str, str] | None = None,
    partitions: Iterable[int] | None = None,
    chunk: int = DEFAULT_CHUNK,
    signer: RecordSigner | None = None,
) -> int:
    """Fold the log from offset 0 into a new store and put it in place of the one at ``path``.

    The new store is built in ``<path>.rebuild`` and swapped in only when complete, so a crash
    during the rebuild leaves the old store untouched.  Close every store open on ``path``
    first.  Returns the number of records folded.
    """
    target = Path(path)
    staging = target.with_name(target.name + ".rebuild")
    remove_store(staging)
    store = ProjectionStore(staging, signer=signer)
    try:
        folded = await catch_up(
            log, store, projections, topic_names=topic_names, partitions=partitions, chunk=chunk
        )
    finally:
        store.close()
    remove_store(target)
    staging.rename(target)
    return folded
