"""Run wakeline's benchmarks: ``python -m benchmarks.run [--quick] [--only NAME ...]``.

Prints a table and writes the figures to ``benchmarks/results/latest.json``.  No figure is
asserted: this measures, it does not judge.  More benchmarks (e.g. ``kafka_*``) plug in by
registering in :mod:`benchmarks.registry` from a module listed in ``MODULES`` or, when it
exists, ``OPTIONAL_MODULES``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import importlib
import importlib.util
import logging
import resource
import time
from collections.abc import Sequence

from benchmarks.registry import BENCHMARKS, FULL, QUICK, Profile, Row
from benchmarks.report import print_table, write_json

MODULES = (
    "benchmarks.embedded",
    "benchmarks.codec",
    "benchmarks.telemetry",
    "benchmarks.restart",
    "benchmarks.api",
    "benchmarks.step_profile",
    "benchmarks.history",
    "benchmarks.adapters",
)
OPTIONAL_MODULES = ("benchmarks.kafka", "benchmarks.kafka_resume", "benchmarks.rebalance")


def load_modules() -> None:
    for name in MODULES:
        importlib.import_module(name)
    for name in OPTIONAL_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, a CI smoke run")
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="run only this benchmark (repeatable)"
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--json", type=Path, help="where to write the JSON (default: latest.json)")
    return parser.parse_args(argv)


def select(only: Sequence[str] | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    unknown = [name for name in only if name not in BENCHMARKS]
    if unknown:
        known = ", ".join(BENCHMARKS)
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)} (known: {known})")
    return list(dict.fromkeys(only))


def run_all(names: Sequence[str], profile: Profile) -> tuple[list[Row], dict[str, float]]:
    """Each benchmark on its own event loop; rows in order, and seconds each took."""
    rows: list[Row] = []
    durations: dict[str, float] = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        rows += asyncio.run(BENCHMARKS[name](profile))
        durations[name] = round(time.perf_counter() - start, 3)
    return rows, durations


def peak_rss_row() -> Row:
    """Peak RSS of this process (the memory benchmark's child reports its own figures)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mib = peak / 2**20 if sys.platform == "darwin" else peak / 1024  # macOS: bytes, Linux: KiB
    return Row("process", "peak RSS", mib, "MiB", "the benchmark process, all benchmarks")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    load_modules()
    if args.list:
        print("\n".join(BENCHMARKS))
        return 0
    profile = QUICK if args.quick else FULL
    started = time.perf_counter()
    rows, durations = run_all(select(args.only), profile)
    rows.append(peak_rss_row())
    total = time.perf_counter() - started
    durations["total"] = round(total, 3)
    title = f"wakeline benchmarks ({profile.name}; conditions per row in its notes) {total:.1f} s"
    print_table(rows, title)
    path = write_json(rows, profile, durations, args.json)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
