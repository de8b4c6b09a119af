"""The deployment examples (deploy/compose.yaml, deploy/k8s/*.yaml) against the real CLI:
every imgscan invocation names an existing command, and every flag it uses appears in that
command's --help; the Indexed Job's shards match its completions."""

from __future__ import annotations

import glob
import os
import re
import shlex
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from clihelp import imgscan

DEPLOY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deploy")


def documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in [os.path.join(DEPLOY, "compose.yaml"),
                 *sorted(glob.glob(os.path.join(DEPLOY, "k8s", "*.yaml")))]:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    yield os.path.relpath(path, DEPLOY), doc


def argv_lists(doc: dict[str, Any]) -> Iterator[list[str]]:
    """Each container's command line: compose ``command``, k8s ``command`` + ``args``;
    ``sh -c SCRIPT`` is split like a shell would (variables left as they are)."""
    if "services" in doc:
        for svc in doc["services"].values():
            if "command" in svc:
                yield _unwrap(list(svc["command"]))
        return
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    for c in pod.get("containers", []):
        yield _unwrap([*c.get("command", []), *c.get("args", [])])


def _unwrap(argv: list[str]) -> list[str]:
    if argv[:2] == ["sh", "-c"]:
        argv = shlex.split(argv[2])
    if argv and argv[0] == "exec":
        argv = argv[1:]
    return argv


def invocations() -> list[tuple[str, list[str]]]:
    out = []
    for where, doc in documents():
        for argv in argv_lists(doc):
            if argv and argv[0] == "imgscan":
                out.append((where, argv[1:]))
    return out


_HELP: dict[str, str] = {}


def help_text(command: str) -> str:
    if command not in _HELP:
        r = imgscan(command, "--help")
        assert r.code == 0, f"imgscan {command}: {r.err}"
        _HELP[command] = r.out
    return _HELP[command]


def test_examples_cover_serve_worker_and_both_audits() -> None:
    found = invocations()
    commands = [args[0] for _, args in found]
    assert {"serve", "worker", "audit"} <= set(commands)
    audits = [args for _, args in found if args[0] == "audit"]
    assert any("--queue" in a for a in audits) and any("--shard" in a for a in audits)
    wheres = {w for w, _ in found}
    assert "compose.yaml" in wheres and any(w.startswith("k8s/") for w in wheres)


@pytest.mark.parametrize(("where", "args"), invocations(),
                         ids=lambda v: v if isinstance(v, str) else v[0])
def test_every_flag_exists(where: str, args: list[str]) -> None:
    text = help_text(args[0])
    flags = {a.split("=", 1)[0] for a in args[1:] if a.startswith("--")}
    assert flags
    for flag in flags:
        assert re.search(rf"(^|[\s,]){re.escape(flag)}([\s,=/]|$)", text, re.M), \
            f"{where}: imgscan {args[0]} has no {flag}"


def test_indexed_job_shards_match_completions() -> None:
    for where, doc in documents():
        if doc.get("kind") != "Job":
            continue
        spec = doc["spec"]
        assert spec["completionMode"] == "Indexed"
        for argv in argv_lists(doc):
            shard = argv[argv.index("--shard") + 1]
            m = re.fullmatch(r"\$\(\(JOB_COMPLETION_INDEX \+ 1\)\)/(\d+)", shard)
            assert m, f"{where}: --shard {shard}"
            assert int(m.group(1)) == spec["completions"]


def test_queue_urls_point_at_the_redis_service() -> None:
    for where, doc in documents():
        if "services" in doc:
            assert "redis" in doc["services"]
        for argv in argv_lists(doc):
            for flag in ("--queue", "--cache"):
                if flag in argv:
                    assert argv[argv.index(flag) + 1].startswith("redis://redis:6379/"), where


def test_other_commands_do_not_load_the_server_stack() -> None:
    """serve/worker/audit import Celery, redis-py, Starlette and uvicorn lazily: loading
    the command line (and running, say, --help) pulls in none of them."""
    import subprocess
    import sys

    from clihelp import SRC

    code = ("import sys, imgscan.cli\n"
            "from click.testing import CliRunner\n"
            "CliRunner().invoke(imgscan.cli.main, ['scan', '--help'])\n"
            "heavy = {'celery', 'kombu', 'redis', 'starlette', 'uvicorn', 'billiard'}\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": SRC}, check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout
