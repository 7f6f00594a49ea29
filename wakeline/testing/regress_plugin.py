"""A pytest plugin that runs regression bundles as tests, one test per recorded run.

    pytest -p wakeline.testing.regress_plugin --wakeline-app agents.py:app regressions/

(or ``pytest_plugins = ["wakeline.testing.regress_plugin"]`` in a ``conftest.py`` with
``--wakeline-app`` in ``addopts``).  Every ``*.wlrun.json`` file pytest collects becomes a test
that replays the run against the app with no provider reachable and fails with the first
divergence (see :mod:`wakeline.regress`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wakeline import regress
from wakeline.core.app import App
from wakeline.runtime import load_target


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wakeline")
    group.addoption(
        "--wakeline-app",
        metavar="MODULE[:NAME]",
        help="the app whose code regression bundles (*.wlrun.json) are replayed against",
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.File | None:
    if file_path.name.endswith(regress.SUFFIX):
        return BundleFile.from_parent(parent, path=file_path)
    return None


class RegressionDiverged(Exception):
    """A recorded run that the current code does not reproduce."""


class BundleFile(pytest.File):
    def collect(self) -> Any:
        yield BundleItem.from_parent(self, name=self.path.name.removesuffix(regress.SUFFIX))


class BundleItem(pytest.Item):
    def runtest(self) -> None:
        result = regress.check_bundle(_app(self.config), self.path)
        if not result.passed:
            raise RegressionDiverged(result.describe())

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, RegressionDiverged | regress.BundleError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"regression bundle {self.name}"


_APP_KEY = pytest.StashKey[App]()


def _app(config: pytest.Config) -> App:
    if _APP_KEY not in config.stash:
        target = config.getoption("--wakeline-app")
        if not target:
            raise pytest.UsageError("regression bundles need --wakeline-app MODULE[:NAME]")
        config.stash[_APP_KEY] = load_target(str(target))[0]
    return config.stash[_APP_KEY]
