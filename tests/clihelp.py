"""Running the real ``imgscan`` command in a subprocess, as users and CI do."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
#: a user secret rule (``rules/*.toml`` format) that the warm-path tests add and edit
MY_TOKEN_RULE = """
[[rules]]
id = "my-token"
title = "My token"
severity = "high"
regex = '(?P<secret>mytok_[a-z0-9]{12})'
keywords = ["mytok_"]
"""
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


_SHARED_SRC: list[str] = []


def src_for_other_users() -> str:
    """A copy of ``src`` that another user (nobody, a rootless podman user) can import.

    Why: the checkout may sit below a directory only root can enter (a ``mktemp -d`` is
    0700); the copy lives in a 0755 temporary directory, with the ``_rules`` link resolved,
    and is removed when the test process exits."""
    if not _SHARED_SRC:
        import atexit
        import shutil
        import tempfile

        top = tempfile.mkdtemp(prefix="imgscan-src-")
        os.chmod(top, 0o755)
        dest = os.path.join(top, "src")
        shutil.copytree(SRC, dest, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        for dirpath, dirnames, filenames in os.walk(dest):
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o755)
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o644)
        atexit.register(shutil.rmtree, top, True)
        _SHARED_SRC.append(dest)
    return _SHARED_SRC[0]
