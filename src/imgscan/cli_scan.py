"""``imgscan scan IMAGE [OPTIONS]`` parsed without click (the entry's fast path).

A warm scan (every layer and the assembled report cached) is over in tens of milliseconds;
importing click and building the command table would be a third of it. The common forms of
``scan`` — one IMAGE, the documented scan, limit and registry options, each given once
(``--format``, ``--rules`` and ``--disable-rule`` repeatable), ``--opt VALUE`` or
``--opt=VALUE`` — are parsed here into the keyword arguments click would hand the command,
and run by the same body (``cli_values.scan_one``). Anything else goes to click unchanged:
``--help``, ``--all``, ``--atomic-*``, ``--cache``, ``--vulns``, short options other than a
lone ``-o FILE`` or ``-w``, ``--``, a repeated single option, a value click would reject (a
file where a directory is wanted, a number out of range, ...), options that exclude each
other and a missing or extra argument; click then gives its usual messages and exit codes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from typing import Any

#: option -> (keyword, kind); kinds: "str", "multi", "flag", "int", "bool", or a path check
#: ("path:" + f(ile okay) d(ir okay) e(xists): click.Path's checks)
_OPTIONS: dict[str, tuple[str, str]] = {
    "--root": ("root", "path:d"),
    "--platform": ("platform", "platform"),
    "--format": ("formats", "multi"),
    "--output": ("output", "path:f"),
    "-o": ("output", "path:f"),
    "--fail-on": ("fail_on", "str"),
    "--ignore-file": ("ignore_file", "path:f"),
    "--baseline": ("baseline", "path:fe"),
    "--policy": ("policy", "path:fe"),
    "--packages": ("show_packages", "flag"),
    "--elf": ("show_elf", "flag"),
    "--wide": ("wide", "flag"),
    "-w": ("wide", "flag"),
    "--analyzers": ("analyzers", "str"),
    "--rules": ("rule_dirs", "multipath:de"),
    "--disable-rule": ("disabled_rules", "multi"),
    "--show-secrets": ("show_secrets", "flag"),
    "--scan-binaries": ("scan_binaries", "flag"),
    "--no-hidden": ("no_hidden", "flag"),
    "--max-age-days": ("max_age_days", "int:1"),
    "--jobs": ("jobs", "int:1:64"),
    "--max-entries": ("max_entries", "int:1"),
    "--max-layer-size": ("max_layer_size", "int:1"),
    "--creds": ("creds", "str"),
    "--registry-token": ("registry_token", "str"),
    "--authfile": ("authfile", "path:f"),
    "--tls-verify": ("tls_verify", "bool"),
    "--cert-dir": ("cert_dir", "path:de"),
    "--keep": ("keep", "flag"),
}
#: click's defaults for what was not given (environment variables as click reads them)
_DEFAULTS: dict[str, Any] = {
    "formats": (), "output": None, "fail_on": None, "ignore_file": None, "baseline": None,
    "policy": None, "show_packages": False, "show_elf": False, "wide": False,
    "analyzers": None, "rule_dirs": (), "disabled_rules": (), "show_secrets": False,
    "scan_binaries": False, "no_hidden": False, "max_age_days": 365, "jobs": None,
    "max_entries": 2_000_000, "max_layer_size": 64 << 30, "tls_verify": True,
    "authfile": None, "cert_dir": None, "keep": False, "root": None, "platform": None,
}
_ENV = {"root": "IMGSCAN_ROOT", "creds": "IMGSCAN_CREDS",
        "registry_token": "IMGSCAN_REGISTRY_TOKEN"}
_BOOLS = {"true": True, "false": False}


def _path_ok(value: str, checks: str) -> bool:
    """click.Path(file_okay, dir_okay, exists)'s verdict on ``value`` (readable too)."""
    if not value:
        return False
    try:
        st = os.stat(value)
    except OSError:
        return "e" not in checks
    if ("f" not in checks and stat.S_ISREG(st.st_mode)) or \
            ("d" not in checks and stat.S_ISDIR(st.st_mode)):
        return False
    return os.access(value, os.R_OK)


def _convert(kind: str, value: str) -> tuple[bool, Any]:
    """(ok, the value as click converts it) for one option value of ``kind``."""
    if kind.startswith(("path:", "multipath:")):
        return _path_ok(value, kind.partition(":")[2]), value
    if kind.startswith("int:"):
        bounds = [int(b) for b in kind.split(":")[1:]]
        if not (value.isascii() and value.isdigit()):
            return False, None
        n = int(value)
        return bounds[0] <= n <= (bounds[1] if len(bounds) > 1 else n), n
    if kind == "bool":
        return value in _BOOLS, _BOOLS.get(value)
    if kind == "platform":  # clioptions._check_platform
        parts = value.split("/")
        return len(parts) in (2, 3) and all(parts), value
    return True, value


def parse(argv: Sequence[str]) -> tuple[str, dict[str, Any]] | None:
    """(IMAGE, the keyword arguments of click's ``scan``) for the forms handled here, else
    None (click's turn)."""
    if not argv or argv[0] != "scan":
        return None
    given: dict[str, Any] = {}
    args: list[str] = []
    rest = list(argv[1:])
    while rest:
        tok = rest.pop(0)
        if not tok.startswith("-"):
            args.append(tok)
            continue
        name, eq, value = tok.partition("=")
        if name not in _OPTIONS or (eq and name.startswith("-") and not name.startswith("--")):
            return None  # --help, --, -, unknown, -oFILE or -o=FILE, bundled short flags
        key, kind = _OPTIONS[name]
        multi = kind.startswith(("multi", "multipath"))
        if key in given and not multi:
            return None
        if kind == "flag":
            if eq:
                return None
            given[key] = True
            continue
        if not eq:
            if not rest or rest[0].startswith("-"):
                return None
            value = rest.pop(0)
        ok, converted = _convert(kind, value)
        if not ok:
            return None
        if multi:
            given[key] = (*given.get(key, ()), converted)
        else:
            given[key] = converted
    if len(args) != 1 or not args[0]:  # an empty IMAGE: click's "give exactly one of"
        return None
    kw = {**_DEFAULTS}
    for key, var in _ENV.items():
        env = os.environ.get(var)
        kw[key] = env or None
        if key == "root" and env and not _path_ok(env, "d"):
            return None
    kw.update(given)
    if kw["creds"] is not None and kw["registry_token"] is not None:
        return None  # click's usage error
    return args[0], kw


def job(argv: Sequence[str]) -> Callable[[], None] | None:
    """What the entry runs for ``argv`` when it is a plain ``scan``; None: click's turn."""
    parsed = parse(argv)
    if parsed is None:
        return None
    image, kw = parsed

    def run() -> None:
        from imgscan.cli_values import scan_one

        root, platform, keep = kw.pop("root"), kw.pop("platform"), kw.pop("keep")
        raise SystemExit(scan_one(root, platform, image, keep, {}, kw))

    return run
