"""The command line's shared parts: the exit-code epilog, the group that turns library
errors into one-line messages, the options several commands take, and the small helpers that
turn them into library values (``imgscan.api`` is the only way in, as for ``cli.py``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click

from imgscan.errors import ImgscanError

if TYPE_CHECKING:
    from imgscan.analyzers.interface import ScanOptions
    from imgscan.gate import GateConfig
    from imgscan.model import Report
    from imgscan.pipeline import AuditResult
    from imgscan.reports.interface import OutputSpec, WriterOptions
    from imgscan.store.store import Store

EXIT_CODES = """\b
Exit codes:
  0  success (scan: no finding at or above --fail-on)
  1  the gate failed: a finding at or above --fail-on, or a policy violation
  2  usage error (bad option, bad rule/ignore/policy file)
  3  the image, store or environment could not be read (nothing half-written is left)
"""


def fail(message: str, code: int = 3) -> NoReturn:
    click.echo(f"imgscan: error: {message}", err=True)
    sys.exit(code)


class ImgscanGroup(click.Group):
    """Turns library errors into one-line messages and exit codes, in one place."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """click's own usage errors in imgscan's form (``imgscan: error: …``, exit 2)."""
        if kwargs.get("standalone_mode", True) is False:
            return super().main(*args, **kwargs)
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.UsageError as e:
            hint = f"\nTry '{e.ctx.command_path} --help' for help." if e.ctx else ""
            fail(e.format_message() + hint, e.exit_code)
        except click.ClickException as e:
            fail(e.format_message(), e.exit_code)
        except click.exceptions.Abort:
            fail("aborted", 1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ImgscanError as e:
            fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:
            sys.exit(0)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except SystemExit:
            raise
        except Exception as e:  # the last line of defence: never a traceback for users
            if os.environ.get("IMGSCAN_DEBUG"):
                raise
            fail(f"unexpected {type(e).__name__}: {e} (set IMGSCAN_DEBUG=1 for a traceback)")


def root_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--root",
        envvar="IMGSCAN_ROOT",
        type=click.Path(file_okay=False),
        help="Store directory (default $IMGSCAN_ROOT, else /var/lib/imgscan as root, "
        "else ~/.local/share/imgscan).",
    )(f)


def _check_platform(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    parts = value.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise click.BadParameter("expected OS/ARCH[/VARIANT], e.g. linux/arm64/v8")
    return value


def platform_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--platform", metavar="OS/ARCH[/VARIANT]", callback=_check_platform,
                        help="Image to choose from a multi-platform index (default: the "
                        "host's, e.g. linux/amd64).")(f)


def registry_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options for docker:// references (ignored by local sources)."""
    opts = [
        click.option("--creds", metavar="USER:PASS", envvar="IMGSCAN_CREDS",
                     help="Registry credentials (else auth files: --authfile, "
                     "$REGISTRY_AUTH_FILE, containers auth.json, ~/.docker/config.json)."),
        click.option("--authfile", type=click.Path(dir_okay=False),
                     help="Registry auth file (containers auth.json / docker config.json)."),
        click.option("--tls-verify", type=click.BOOL, default=True, show_default=True,
                     metavar="BOOL",
                     help="Verify registry TLS certificates; false also allows plain HTTP."),
        click.option("--cert-dir", type=click.Path(file_okay=False, exists=True),
                     help="Directory of extra CA certificates (*.crt) for registries."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _registry_opts(kw: dict[str, Any]) -> dict[str, Any]:
    """Pop the registry options out of a command's keyword arguments."""
    out = {k: kw.pop(k) for k in ("creds", "authfile", "tls_verify", "cert_dir")}
    return {k: v for k, v in out.items() if v is not None}


def _source_opts(ref: str, kw: dict[str, Any]) -> dict[str, Any]:
    opts = _registry_opts(kw)
    return opts if ref.startswith("docker://") else {}


def limit_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The caps on one layer (decompression bombs, entry floods), shown in --help."""
    f = click.option("--max-entries", type=click.IntRange(1), default=2_000_000,
                     show_default=True, help="Refuse a layer with more tar entries.")(f)
    return click.option("--max-layer-size", type=click.IntRange(1), default=64 << 30,
                        show_default=True, metavar="BYTES",
                        help="Refuse a layer whose uncompressed tar is larger (64 GiB; "
                        "runs of zeros are stored as holes and cost no disk, in the store "
                        "and in a streamed scan's temporary files; a streamed scan leaves "
                        "a file over 4 GiB unanalyzed, with a warning).")(f)


def scan_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options shared by every command that scans (scan, pull --vet, inspect --vet)."""
    opts = [
        click.option("--format", "formats", multiple=True, metavar="FORMAT[=FILE]",
                     help="Report format, repeatable with =FILE: table (default), json, "
                     "sarif, cyclonedx, spdx, html, atomic."),
        click.option("--output", "-o", type=click.Path(dir_okay=False),
                     help="Write the (single, un-named) report here instead of stdout."),
        click.option("--fail-on", metavar="SEVERITY",
                     help="Exit 1 when a finding at or above this severity remains "
                     "(critical, high, medium, low, info; 'none' never fails)."),
        click.option("--ignore-file", type=click.Path(dir_okay=False),
                     help="TOML ignore file (default: .imgscanignore when present)."),
        click.option("--baseline", type=click.Path(dir_okay=False, exists=True),
                     help="An earlier JSON report: count only findings that are new."),
        click.option("--policy", type=click.Path(dir_okay=False, exists=True),
                     help="Policy file (TOML): limits, banned packages, user, size, age, OS."),
        click.option("--packages", "show_packages", is_flag=True,
                     help="Table: list packages too."),
        click.option("--elf", "show_elf", is_flag=True,
                     help="Table: list per-binary ELF hardening."),
        click.option("--wide", "-w", "wide", is_flag=True,
                     help="Table: cut and wrap nothing (default: fit the terminal or "
                     "$COLUMNS)."),
        click.option("--analyzers", help="Comma-separated analyzer names "
                     "(see 'imgscan analyzers'; default all)."),
        click.option("--rules", "rule_dirs", multiple=True, type=click.Path(file_okay=False,
                     exists=True), help="Extra secret-rule directory (repeatable)."),
        click.option("--disable-rule", "disabled_rules", multiple=True, metavar="ID",
                     help="Switch off a secret rule (repeatable; see 'imgscan rules')."),
        click.option("--show-secrets", is_flag=True,
                     help="Print secret values in full (default: redacted)."),
        click.option("--scan-binaries", is_flag=True,
                     help="Also look for secrets in binary files."),
        click.option("--no-hidden", is_flag=True,
                     help="Do not scan content that later layers deleted or replaced."),
        click.option("--max-age-days", type=click.IntRange(1), default=365,
                     show_default=True, help="Report images older than this."),
        click.option("--jobs", type=click.IntRange(1, 64),
                     help="Worker processes (default: the number of cores)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


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
        click.echo(outcome.gate.summary(), err=True)
    return outcome.exit_code


def _store(root: str | None, max_layer_size: int | None = None,
           max_entries: int | None = None, create: bool = False) -> Store:
    """The store. Only commands that import (pull, scan of a reference) create one at a
    --root or $IMGSCAN_ROOT that does not exist: elsewhere that is a typo, not a new store.
    The default location is made on first use whatever the command."""
    from imgscan.api import open_store

    return open_store(root, max_layer_size=max_layer_size, max_entries=max_entries,
                      create=create or root is None)


def _human(n: int) -> str:
    """Sizes in one unit system everywhere: the reports' binary units (KiB, MiB, GiB;
    reports.common.human_size, not imported here: the command line imports no writer)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _tell_verdicts(result: AuditResult, gate: GateConfig) -> None:
    if gate.judges:
        for e in result.entries:
            if e.verdict:
                click.echo(f"{e.label}: {e.verdict}", err=True)
