"""The Apache Kafka jars for the test broker: fetched from Maven Central once, then cached."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)


KAFKA_VERSION = "3.9.2"  # newest 3.9.x: Kafka 4.x dropped protocol versions aiokafka uses
# Beyond kafka_2.13's runtime scope, the broker needs an slf4j binding to log: the Kafka 3.9
# tarball ships slf4j-reload4j + reload4j, so do we.
EXTRA_DEPS = ("org.slf4j:slf4j-reload4j:1.7.36", "ch.qos.reload4j:reload4j:1.2.25")


_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>wakeline.testing</groupId><artifactId>kafka-jars</artifactId><version>1</version>
<packaging>pom</packaging><dependencies>{deps}</dependencies><build><plugins><plugin>
<groupId>org.apache.maven.plugins</groupId><artifactId>maven-dependency-plugin</artifactId>
<version>3.8.1</version></plugin></plugins></build></project>
"""


def cache_dir(version: str = KAFKA_VERSION) -> Path:
    base = os.environ.get("WAKELINE_CACHE") or str(Path.home() / ".cache" / "wakeline")
    return Path(base) / f"kafka-{version}"


def fetch_jars(version: str = KAFKA_VERSION) -> Path:
    """Download the broker's runtime jars with Maven once; return the directory holding them."""
    root = cache_dir(version)
    libs, marker = root / "libs", root / ".complete"
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent runners (xdist, CI jobs) fetch only once
        if marker.exists():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError("Maven ('mvn') is not on PATH: cannot fetch the Kafka jars")
        deps = "".join(
            "<dependency><groupId>{}</groupId><artifactId>{}</artifactId><version>{}</version>"
            "</dependency>".format(*c.split(":"))
            for c in (f"org.apache.kafka:kafka_2.13:{version}", *EXTRA_DEPS)
        )
        (root / "pom.xml").write_text(_POM.format(deps=deps))
        shutil.rmtree(libs, ignore_errors=True)
        log.info("fetching Apache Kafka %s jars from Maven Central into %s", version, libs)
        t0 = time.monotonic()
        goal = ["-B", "-q", "dependency:copy-dependencies", "-Dmdep.includeScope=runtime"]
        cmd = [mvn, *goal, "-f", str(root / "pom.xml"), f"-DoutputDirectory={libs}"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        if res.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({res.returncode}):\n{tail(res.stdout + res.stderr)}"
            )
        marker.write_text(f"{version}\n")
        log.info("fetched Kafka jars in %.1fs", time.monotonic() - t0)
        return libs


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])
