"""Running the real ``imgscan`` command in a subprocess, as users and CI do."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
CRASHHOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crashhooks.py")


def _command(env: dict[str, str]) -> list[str]:
    """``python -m imgscan``, or with ``IMGSCAN_CRASH_AT`` the same through the test-only
    crash hooks (tests/crashhooks.py)."""
    if env.get("IMGSCAN_CRASH_AT"):
        return [sys.executable, CRASHHOOKS]
    return [sys.executable, "-m", "imgscan"]


@dataclass
class Result:
    code: int
    out: str
    err: str


def imgscan(*args: str, root: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 120, cwd: str | None = None) -> Result:
    full_env = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    full_env.pop("IMGSCAN_DEBUG", None)
    cmd = [*_command(full_env), *args]
    if root is not None:
        cmd += ["--root", root]
    p = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout,
                       cwd=cwd)
    return Result(p.returncode, p.stdout, p.stderr)


def start(*args: str, root: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    full_env = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    return subprocess.Popen([*_command(full_env), *args, "--root", root],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full_env)
