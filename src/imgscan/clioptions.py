"""The command line's shared parts: the exit-code epilog, the group that turns library
errors into one-line messages, the options several commands take, and the small helpers that
turn them into library values (``imgscan.api`` is the only way in, as for ``cli.py``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click

from imgscan.cli_values import _analyzer_names as _analyzer_names
from imgscan.cli_values import _gate_setup as _gate_setup
from imgscan.cli_values import _judge as _judge
from imgscan.cli_values import _registry_opts as _registry_opts
from imgscan.cli_values import _scan_options as _scan_options
from imgscan.cli_values import _source_opts as _source_opts
from imgscan.cli_values import _store as _store
from imgscan.cli_values import _writer_options as _writer_options
from imgscan.errors import ImgscanError

if TYPE_CHECKING:
    from imgscan.gate import GateConfig
    from imgscan.pipeline import AuditResult

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
        click.option("--registry-token", metavar="TOKEN", envvar="IMGSCAN_REGISTRY_TOKEN",
                     help="A bearer token already issued for the registry (sent as is, no "
                     "token server; e.g. Harbor's pull token). Not with --creds."),
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
