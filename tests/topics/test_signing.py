"""Record signatures (wakeline.topics.signing): what a reader holding the record key trusts,
and where the key comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from wakeline.topics.embedded.log import EmbeddedLog
from wakeline.topics.port import Record
from wakeline.topics.signing import (
    HEADER,
    KEY_ENV,
    KEY_FILE,
    RecordSigner,
    create_key_file,
    signer_for,
)

KEY = b"k" * 32


def signed(signer: RecordSigner, partition: int, key: bytes, value: bytes) -> Record:
    mac = signer.sign(partition, key, value)
    return Record("wakeline.events", partition, 7, key, value, (("type", b"X"), (HEADER, mac)))


def test_only_a_record_signed_for_its_partition_key_and_value_is_trusted() -> None:
    signer = RecordSigner(KEY)
    good = signed(signer, 2, b"run-1", b"value")
    assert signer.problem(good) is None
    for changed in (
        Record(good.topic, 3, good.offset, good.key, good.value, good.headers),  # moved
        Record(good.topic, 2, good.offset, b"run-2", good.value, good.headers),  # re-keyed
        Record(good.topic, 2, good.offset, good.key, b"valuf", good.headers),  # edited
    ):
        assert "bad signature" in (signer.problem(changed) or "")
    unsigned = Record(good.topic, 2, good.offset, good.key, good.value, (("type", b"X"),))
    assert "unsigned" in (signer.problem(unsigned) or "")
    other = RecordSigner(b"o" * 32)
    assert "bad signature" in (other.problem(good) or "")
    twice = Record(good.topic, 2, 7, good.key, good.value, (*good.headers, (HEADER, b"00")))
    assert signer.problem(twice) is not None


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        RecordSigner(b"short")


def test_the_key_file_is_private_and_the_first_one_written_wins(tmp_path: Path) -> None:
    file = tmp_path / KEY_FILE
    create_key_file(file)
    first = file.read_bytes()
    create_key_file(file)
    assert file.read_bytes() == first and len(first.strip()) >= 32
    assert file.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temporary file left


async def test_a_new_embedded_log_gets_a_key_and_an_old_one_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    async with await EmbeddedLog.open(tmp_path / "new") as log:
        assert log.key_file == tmp_path / "new" / KEY_FILE and signer_for(log) is not None

    await (await EmbeddedLog.open(tmp_path / "old")).close()
    (tmp_path / "old" / KEY_FILE).unlink()  # a log made before signatures existed
    async with await EmbeddedLog.open(tmp_path / "old") as log:
        assert signer_for(log) is None  # its unsigned records stay readable

    key_file = tmp_path / "fleet.key"
    key_file.write_bytes(KEY)
    monkeypatch.setenv(KEY_ENV, str(key_file))
    async with await EmbeddedLog.open(tmp_path / "old") as log:
        from_env = signer_for(log)  # the fleet's key wins over the log's own
    assert from_env is not None
    assert from_env.sign(0, b"k", b"v") == RecordSigner(KEY).sign(0, b"k", b"v")
    key_file.write_bytes(b"short")
    with pytest.raises(ValueError, match=r"fleet\.key"):
        signer_for(log)
