"""Run ids: one rule, checked by the client, the API and the worker alike.

A run id is the key of every record of the run, a part of every projection key and a word in
the CLI's output, so it is restricted to letters, digits and ``. _ : -`` (starting with a letter
or a digit), at most 128 characters: no ``/`` (the projections' key separator), no spaces, no
markup, no control characters.
"""

from __future__ import annotations

import re

__all__ = ["RUN_ID_PATTERN", "check_run_id", "run_id_problem"]

RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
_RUN_ID = re.compile(RUN_ID_PATTERN)


def run_id_problem(run_id: str) -> str | None:
    """What is wrong with ``run_id``, or ``None`` if it follows the rule."""
    if _RUN_ID.fullmatch(run_id):
        return None
    return (
        f"invalid run id {run_id[:140]!r}: 1 to 128 letters, digits or '._:-', "
        "starting with a letter or a digit"
    )


def check_run_id(run_id: str) -> str:
    """``run_id`` if it follows the rule; else :class:`ValueError` saying why."""
    problem = run_id_problem(run_id)
    if problem is not None:
        raise ValueError(problem)
    return run_id
