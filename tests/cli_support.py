"""Running ``python -m core`` from the tests: in this process by default, or as the real command."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest

from core.paths import REPO_ROOT


def run_cli(*args, env: dict[str, str | None] | None = None, in_process: bool = True,
            timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m core <args>``: its exit code, standard output and standard error.

    In this process by default: the same ``core.cli.main`` as ``python -m core``, without paying the imports and the
    model loading of a new interpreter on every call (an exception escaping ``main`` fails the test, as a traceback
    would). ``in_process=False`` starts the real command, for the paths that must not hang or crash the interpreter.
    ``env`` sets variables for the call; a value of None removes the variable.
    """
    args = [str(arg) for arg in args]
    changes = env or {}
    if not in_process:
        environment = {**os.environ, **changes}
        environment = {name: value for name, value in environment.items() if value is not None}
        return subprocess.run([sys.executable, "-m", "core", *args], check=False, cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=timeout, env=environment)
    from core.cli import main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(out), redirect_stderr(err):
        for name, value in changes.items():
            if value is None:
                patch.delenv(name, raising=False)
            else:
                patch.setenv(name, value)
        patch.chdir(REPO_ROOT)
        try:
            code = main(args)
        except SystemExit as exited:  # argparse's refusals and --help
            code = exited.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def assert_message_not_traceback(done: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    """The command ended with ``code`` and a message holding every fragment, never a traceback."""
    assert done.returncode == code, done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-3000:]
    for fragment in fragments:
        assert fragment in done.stderr + done.stdout, done.stderr[-2000:]
