"""`rd-train ARGS` run by the command line's own entry point in the test's process.

`rd_train.cli.main(argv)` is what the installed `rd-train` script calls (``sys.exit(main())``); calling it
here gives the same exit status, stdout and stderr without a new process, whose torch and Lightning
imports cost about 8 s on the 2-core machine (issue 31: the suite's time). A test that needs a real
process (a signal, the script itself) still starts one.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from rd_train.cli import main


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


def rd_train(*args: object, env: dict[str, str] | None = None, cwd: Path | None = None) -> Done:
    """``rd-train ARGS`` in this process, with ``env`` and ``cwd`` for the call only."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        if cwd is not None:
            patch.chdir(cwd)
        patch.setattr(sys, "stdout", stdout)
        patch.setattr(sys, "stderr", stderr)
        code = main([str(a) for a in args])
    return Done(code, stdout.getvalue(), stderr.getvalue())
