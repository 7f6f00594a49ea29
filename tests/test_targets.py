"""Loading an app target (``wakeline worker FILE``, ``--app``) does not let files beside the app
replace packages the worker imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

APP = """
import helpers  # a module beside the app: still importable
from wakeline import App

app = App()

@app.agent
async def hello(ctx, name: str) -> str:
    return helpers.greet(name)
"""


def test_a_file_beside_the_app_does_not_shadow_an_installed_package(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "helpers.py").write_text("def greet(name):\n    return 'hi ' + name\n")
    (tmp_path / "genai_prices.py").write_text("raise RuntimeError('the shadow was imported')\n")
    # -P: like the `wakeline` script, the interpreter does not put the working directory first
    probe = textwrap.dedent(f"""
        from wakeline.runtime import load_target
        app, _ = load_target({str(tmp_path / "app.py")!r})
        import genai_prices
        assert "site-packages" in genai_prices.__file__, genai_prices.__file__
        print(sorted(app.agents))
    """)
    done = subprocess.run(
        [sys.executable, "-P", "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['hello']"
