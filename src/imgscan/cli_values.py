"""The command line's option values turned into library values, without click.

Both ``imgscan.cli`` (click) and the entry's fast path for ``scan`` (``imgscan.cli_scan``)
call these, so the fast path and click run the same steps in the same order: the same
errors, the same files, the same exit codes. Nothing here imports click, and everything of
imgscan's is reached through ``imgscan.api`` on first use.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imgscan.analyzers.interface import ScanOptions
    from imgscan.gate import GateConfig
    from imgscan.model import Report
    from imgscan.reports.interface import OutputSpec, WriterOptions
    from imgscan.store.store import Store


def _registry_opts(kw: dict[str, Any]) -> dict[str, Any]:
    """Pop the registry options out of a command's keyword arguments."""
    keys = ("creds", "registry_token", "authfile", "tls_verify", "cert_dir")
    out = {k: kw.pop(k) for k in keys}
    if out["creds"] is not None and out["registry_token"] is not None:
        import click  # click's path only: the fast path hands both to click

        raise click.UsageError("--creds and --registry-token exclude each other")
    return {k: v for k, v in out.items() if v is not None}


def _source_opts(ref: str, kw: dict[str, Any]) -> dict[str, Any]:
    opts = _registry_opts(kw)
    return opts if ref.startswith("docker://") else {}


def _scan_options(kw: dict[str, Any]) -> ScanOptions:
    """ScanOptions from the command line; secret rules are loaded now so that a bad rule
    file is a usage error (exit 2) before anything is pulled or scanned."""
    from imgscan.api import scan_options

    return scan_options(_analyzer_names(kw["analyzers"]), scan_binaries=kw["scan_binaries"],
                        hidden=not kw["no_hidden"], show_secrets=kw["show_secrets"],
                        rule_dirs=kw["rule_dirs"], disabled_rules=kw["disabled_rules"],
                        extra={"max_age_days": kw["max_age_days"]})


def _analyzer_names(text: str | None) -> list[str] | None:
    return [a.strip() for a in text.split(",") if a.strip()] if text else None


def _gate_setup(kw: dict[str, Any],
                outputs: bool = True) -> tuple[GateConfig, list[OutputSpec]]:
    """The gate's configuration and the output plan from --fail-on, --ignore-file (default
    .imgscanignore when present), --baseline, --policy, --format and --output, read before
    anything is pulled or scanned so that a mistake in any of them is a usage error."""
    from imgscan import api
    from imgscan.gate import default_ignore_file

    plan = api.plan_outputs(list(kw["formats"]), kw["output"]) if outputs else []
    gate = api.GateConfig.load(kw["fail_on"], kw["ignore_file"] or default_ignore_file(),
                               kw["baseline"], kw["policy"])
    return gate, plan


def _writer_options(kw: dict[str, Any]) -> WriterOptions:
    from imgscan.api import WriterOptions

    return WriterOptions(packages=kw["show_packages"], elf=kw["show_elf"], wide=kw["wide"])


def _judge(report: Report, gate: GateConfig, plan: list[OutputSpec], kw: dict[str, Any]) -> int:
    """Gate and write one report, tell the verdict when a gate was asked for; the exit code."""
    from imgscan.api import gate_and_write

    outcome = gate_and_write(report, gate, plan, _writer_options(kw))
    if gate.judges:
        sys.stderr.write(outcome.gate.summary() + "\n")  # as click.echo(..., err=True)
        sys.stderr.flush()
    return outcome.exit_code


def _store(root: str | None, max_layer_size: int | None = None,
           max_entries: int | None = None, create: bool = False) -> Store:
    """The store. Only commands that import (pull, scan of a reference) create one at a
    --root or $IMGSCAN_ROOT that does not exist: elsewhere that is a typo, not a new store.
    The default location is made on first use whatever the command."""
    from imgscan.api import open_store

    return open_store(root, max_layer_size=max_layer_size, max_entries=max_entries,
                      create=create or root is None)


def scan_one(root: str | None, platform: str | None, image: str, keep: bool,
             vulns: dict[str, Any], kw: dict[str, Any],
             shared_cache: Callable[[], Any] = lambda: None) -> int:
    """``imgscan scan IMAGE``'s work once its options are parsed (by click or by the fast
    path): gate and outputs first (a bad file is a usage error before anything is read),
    then the store, the scan, the gate and the writers. Returns the exit code."""
    from imgscan.api import is_transport_ref
    from imgscan.api import scan as do_scan

    gate, plan = _gate_setup(kw)
    source_opts = _source_opts(image, kw)
    store = None if image.startswith("dir:") else \
        _store(root, kw.pop("max_layer_size"), kw.pop("max_entries"),
               create=is_transport_ref(image))
    report = do_scan(image, store=store,
                     analyzers=_analyzer_names(kw["analyzers"]), platform=platform,
                     jobs=kw["jobs"], options=_scan_options(kw), keep=keep,
                     cache=shared_cache(), **vulns, **source_opts)
    return _judge(report, gate, plan, kw)
