"""A real Apache Kafka broker for the test suite, with or without Docker.

``start_broker()`` picks, in order: an existing cluster named by ``WAKELINE_KAFKA_BOOTSTRAP``;
testcontainers' ``KafkaContainer`` (KRaft) when a Docker engine answers; otherwise the Apache
Kafka jars fetched from Maven Central with ``mvn`` (cached in ``$WAKELINE_CACHE/kafka-<v>``,
default ``~/.cache/wakeline/kafka-<v>``) and run as a single-node KRaft broker with ``java`` on
127.0.0.1. If nothing works it raises ``RuntimeError`` with every reason: it never skips.

A jars broker runs in its own process group and is killed at normal interpreter exit (atexit).
A SIGKILLed test runner cannot clean up: the JVM is left running; ``stop --workdir`` below (or
``kill -- -$(cat <workdir>/broker.pid)``) removes it. CLI::

    python -m wakeline.testing.kafka_broker fetch                  # pre-fetch the jars (CI)
    python -m wakeline.testing.kafka_broker start --workdir DIR    # detached; DIR/bootstrap
    python -m wakeline.testing.kafka_broker stop --workdir DIR     # via DIR/broker.pid
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import gc
import importlib
import logging
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from wakeline.testing.kafka_jars import KAFKA_VERSION, fetch_jars, tail

log = logging.getLogger(__name__)


DOCKER_IMAGE = "confluentinc/cp-kafka:7.9.0"  # Confluent 7.9 = Kafka 3.9; $WAKELINE_KAFKA_IMAGE
# Small heap, serial GC and C1 only: quick start and light on a 2-core CI machine.
JVM_OPTS = ("-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
_LOG4J = """log4j.rootLogger={level}, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
"""
_SERVER_PROPS = """process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
num.network.threads=2
num.io.threads=2
background.threads=2
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
"""


def _free_port() -> int:
    """A free port below the ephemeral range, so no client socket takes it during a restart."""
    for _ in range(50):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", random.randrange(15000, 32000)))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free TCP port found in 15000-32000")


def broker_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """True if a Metadata v1 request is answered and lists at least one live broker."""
    client = b"wakeline-probe"
    req = struct.pack(">hhih", 3, 1, 7, len(client)) + client + struct.pack(">i", 0)
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(req)) + req)
            with s.makefile("rb") as f:  # int32 size, int32 correlation id, int32 #brokers
                corr, n_brokers = struct.unpack(">ii", f.read(12)[4:])
            return bool(corr == 7 and n_brokers > 0)
    except (OSError, struct.error):
        return False


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _terminate_group(pid: int, sig: int, wait: float) -> bool:
    """Signal the group led by a detached broker pid (if it runs kafka.Kafka); wait for exit."""
    if b"kafka.Kafka" not in _cmdline(pid):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if b"kafka.Kafka" not in _cmdline(pid):  # gone (or a zombie awaiting its parent)
            return True
        time.sleep(0.1)
    return False


class _JarsBroker:
    """One single-node KRaft broker JVM; restartable on the same ports and data dir."""

    def __init__(self, workdir: Path, libs: Path, *, owns_workdir: bool) -> None:
        self.workdir, self.libs, self.owns_workdir = workdir, libs, owns_workdir
        self.port, self.cport = _free_port(), _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.closed = False
        self.config = workdir / "server.properties"
        self.log_file = workdir / "broker.log"
        self.java = shutil.which("java") or f"{os.environ.get('JAVA_HOME', '/usr')}/bin/java"

    def _java(self, main: str, *args: str) -> list[str]:
        level = "INFO" if main == "kafka.Kafka" else "WARN"  # the storage tool logs only problems
        l4j = f"-Dlog4j.configuration=file:{self.workdir / f'log4j-{level}.properties'}"
        return [self.java, *JVM_OPTS, l4j, "-cp", str(self.libs / "*"), main, *args]

    def format(self) -> None:
        """Write the configs; format the data dir unless it already holds a cluster."""
        for level in ("INFO", "WARN"):
            (self.workdir / f"log4j-{level}.properties").write_text(_LOG4J.format(level=level))
        data = self.workdir / "data"
        self.config.write_text(_SERVER_PROPS.format(port=self.port, cport=self.cport, data=data))
        if (data / "meta.properties").exists():
            return
        cluster_id = "-"
        while cluster_id.startswith("-"):  # a leading '-' would be parsed as an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        conf = str(self.config)
        cmd = self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", conf)
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"kafka-storage format failed:\n{tail(res.stdout + res.stderr)}")

    def start(self, timeout: float = 90.0) -> None:
        if self.closed:
            raise RuntimeError("this broker was stopped for good; start a new one")
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("broker is already running")
        t0 = time.monotonic()
        with self.log_file.open("ab") as out:
            self.proc = subprocess.Popen(
                self._java("kafka.Kafka", str(self.config)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        (self.workdir / "broker.pid").write_text(f"{self.proc.pid}\n")
        while not broker_answers("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() - t0 > timeout:
                what = "exited" if self.proc.poll() is not None else f"no answer in {timeout}s"
                self.kill()
                raise RuntimeError(
                    f"Kafka broker {what}; tail of {self.log_file}:\n"
                    f"{tail(self.log_file.read_text(errors='replace'))}"
                )
            time.sleep(0.2)
        log.info("Kafka broker up on 127.0.0.1:%d in %.1fs", self.port, time.monotonic() - t0)

    def _signal(self, sig: int, wait: float) -> None:
        proc, self.proc = self.proc, None
        for s, w in ((sig, wait), (signal.SIGKILL, 10.0)):
            if proc is None or proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, s)  # the JVM leads its own process group
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(w)
        (self.workdir / "broker.pid").unlink(missing_ok=True)

    def kill(self) -> None:
        self._signal(signal.SIGKILL, 10)

    def restart(self, timeout: float = 90.0) -> None:
        self._signal(signal.SIGTERM, 30)
        self.start(timeout)

    def stop(self) -> None:
        self._signal(signal.SIGTERM, 30)
        self.closed = True
        atexit.unregister(self.stop)
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass(frozen=True)
class KafkaBroker:
    """Handle to a running broker. ``how`` is "env", "testcontainers" or "jars"."""

    bootstrap: str
    how: Literal["env", "testcontainers", "jars"]
    note: str = ""
    _handle: Any = field(default=None, repr=False, compare=False)

    @property
    def workdir(self) -> Path | None:
        return self._handle.workdir if isinstance(self._handle, _JarsBroker) else None

    def _jars(self, op: str) -> _JarsBroker:
        if not isinstance(self._handle, _JarsBroker):
            raise RuntimeError(
                f"KafkaBroker.{op}() needs a broker started from jars, "
                f"but this one is how={self.how!r} ({self.bootstrap})"
            )
        return self._handle

    def stop(self) -> None:
        if self.how == "env":
            raise RuntimeError(
                f"{self.bootstrap} comes from WAKELINE_KAFKA_BOOTSTRAP: "
                "an external cluster is never stopped by the test suite"
            )
        self._handle.stop()

    def restart(self, timeout: float = 90.0) -> None:
        """SIGTERM the broker, wait, start it again on the same port and data dir."""
        self._jars("restart").restart(timeout)

    def kill(self) -> None:
        """SIGKILL the broker (data already written survives; ``restart()`` brings it back)."""
        self._jars("kill").kill()


def _docker_answers() -> str | None:
    """None if a Docker engine answers within a few seconds, else the reason it does not."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # docker-py leaks a socket on failure
        try:
            docker: Any = importlib.import_module("docker")
            client = docker.from_env(timeout=3)
            try:
                client.ping()
            finally:
                client.close()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            gc.collect()  # ...inside a reference cycle: free it here, under the filter
    return None


def _start_container() -> KafkaBroker:
    try:
        mod: Any = importlib.import_module("testcontainers.community.kafka")
    except ImportError:  # testcontainers < 4.13
        mod = importlib.import_module("testcontainers.kafka")
    image = os.environ.get("WAKELINE_KAFKA_IMAGE", DOCKER_IMAGE)
    container = mod.KafkaContainer(image).with_kraft()
    container.with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
    container.with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
    container.with_env("KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS", "1000")
    try:
        container.start(timeout=180)
    except Exception:
        with contextlib.suppress(Exception):
            container.stop()
        raise
    return KafkaBroker(
        container.get_bootstrap_server(), "testcontainers", f"testcontainers {image}", container
    )


def _start_jars(workdir: Path | None, *, detached: bool = False) -> KafkaBroker:
    libs = fetch_jars()
    owns = workdir is None
    wd = Path(tempfile.mkdtemp(prefix="wakeline-kafka-")) if workdir is None else workdir
    wd.mkdir(parents=True, exist_ok=True)
    jb = _JarsBroker(wd.resolve(), libs, owns_workdir=owns)
    jb.format()
    jb.start()
    if not detached:
        atexit.register(jb.stop)
    bootstrap = f"127.0.0.1:{jb.port}"
    (wd / "bootstrap").write_text(bootstrap + "\n")
    return KafkaBroker(bootstrap, "jars", f"Apache Kafka {KAFKA_VERSION} jars, java, {wd}", jb)


def start_broker(*, workdir: Path | None = None) -> KafkaBroker:
    """Start (or locate) a Kafka broker; see the module docstring for the order of choices.

    ``workdir`` (jars only; default: a temp dir removed by ``stop()``) keeps server.properties,
    broker.log, broker.pid, bootstrap and data/; data already there is reused.
    """
    env = os.environ.get("WAKELINE_KAFKA_BOOTSTRAP", "").strip()
    if env:
        log.warning("Kafka: using the existing cluster WAKELINE_KAFKA_BOOTSTRAP=%s", env)
        return KafkaBroker(env, "env", "WAKELINE_KAFKA_BOOTSTRAP")
    reasons = ["WAKELINE_KAFKA_BOOTSTRAP is not set"]
    docker_problem = _docker_answers()
    if docker_problem is None:
        try:
            broker = _start_container()
            log.warning("Kafka: Docker answers; started %s at %s", broker.note, broker.bootstrap)
            return broker
        except Exception as exc:
            reasons.append(f"Docker answers but testcontainers failed: {exc!r}")
            log.warning("Kafka: %s; falling back to jars", reasons[-1])
    else:
        reasons.append(f"no Docker engine ({docker_problem})")
    try:
        broker = _start_jars(workdir)
    except Exception as exc:
        reasons.append(f"Apache Kafka jars via mvn+java failed: {exc}")
        raise RuntimeError("No Kafka broker available:\n- " + "\n- ".join(reasons)) from exc
    log.warning("Kafka: %s; started %s at %s", reasons[-1], broker.note, broker.bootstrap)
    return broker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wakeline.testing.kafka_broker")
    parser.add_argument("command", choices=["start", "stop", "fetch"])
    parser.add_argument("--workdir", type=Path, help="broker dir (start/stop)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "fetch":
        print(fetch_jars())
        return 0
    if args.workdir is None:
        parser.error(f"{args.command} needs --workdir")
    workdir: Path = args.workdir
    pid_file = workdir / "broker.pid"
    if args.command == "start":
        if pid_file.exists() and b"kafka.Kafka" in _cmdline(int(pid_file.read_text())):
            parser.error(f"a broker already runs from {workdir} (stop it first)")
        print(_start_jars(workdir, detached=True).bootstrap)
        return 0
    if not pid_file.exists():
        print(f"no broker pid file in {workdir}")
        return 1
    pid = int(pid_file.read_text())
    if not _terminate_group(pid, signal.SIGTERM, 30):
        _terminate_group(pid, signal.SIGKILL, 10)
    pid_file.unlink()
    print(f"stopped broker pid {pid}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
