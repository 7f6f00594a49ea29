"""Whether a group member's process is alive, asked of the operating system.

Each member of an embedded consumer group holds an exclusive ``flock`` on a file of its own
(``<data_dir>/members/<hash>.lock``) for as long as it is a member.  The kernel releases the
lock when the process dies -- SIGKILL, OOM, a crash -- so another process that can take the
lock knows at once that the member is gone: its partitions move in the next sync instead of
after its session timeout.  A paused process (SIGSTOP, a long GC) still holds its lock; the
session timeout stays the backstop for it.  A member whose lock file does not exist (written
by an older version) is judged by its heartbeat alone.

Lock files are left in place when a member leaves: unlinking one while a restarted process of
the same (static) member id opens it would split the lock in two.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from pathlib import Path

from wakeline.fsutil import private_dir
from wakeline.topics.port import LogError

_HOLD_RETRY_S = 0.01


def lock_path(data_dir: Path, group: str, topic: str, member_id: str) -> Path:
    name = hashlib.sha256(f"{group}\0{topic}\0{member_id}".encode()).hexdigest()[:32]
    return data_dir / "members" / f"{name}.lock"


class MemberLock:
    """The lock a member holds while it is one (blocking calls: run them off the loop)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def hold(self, timeout_s: float) -> None:
        """Take the lock; another live process with the same member id makes this fail."""
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LogError(
                        f"{self.path}: another live process is this group member already"
                    ) from None
                time.sleep(_HOLD_RETRY_S)  # a probe holds it for a moment
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the lock


def is_dead(path: Path) -> bool:
    """Whether the member of lock file ``path`` is gone: nobody holds its lock.  ``False`` when
    the file does not exist (nothing to ask: the heartbeat decides)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also drops the probe's lock if it got one
    return True
