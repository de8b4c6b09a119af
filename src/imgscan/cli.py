"""The ``imgscan`` command line: parse, call the library, render. No logic lives here.

Exit codes: 0 passed; 1 the gate failed (a finding at or above --fail-on, or a policy rule);
2 usage error; 3 the image or the environment could not be read.
Heavy modules are imported inside the commands, so ``imgscan mount`` starts fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import click

from imgscan._version import __version__
from imgscan.errors import ImgscanError

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
                        "runs of zeros are stored as holes and cost no disk).")(f)


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


def _scan_options(kw: dict[str, Any]) -> Any:
    """ScanOptions from the command line; secret rules are loaded now so that a bad rule
    file is a usage error (exit 2) before anything is pulled or scanned."""
    from imgscan.analyzers.interface import ScanOptions

    names = _analyzer_names(kw["analyzers"])
    if kw["rule_dirs"] or kw["disabled_rules"] or names is None or \
            any(n.startswith("secrets") for n in names):
        from imgscan.secrets.rules import load_rules

        load_rules(tuple(kw["rule_dirs"]), tuple(kw["disabled_rules"]))
    return ScanOptions(
        scan_binaries=kw["scan_binaries"],
        hidden=not kw["no_hidden"],
        show_secrets=kw["show_secrets"],
        rule_dirs=tuple(kw["rule_dirs"]),
        disabled_rules=tuple(kw["disabled_rules"]),
        extra={"max_age_days": kw["max_age_days"]},
    )


def _analyzer_names(text: str | None) -> list[str] | None:
    return [a.strip() for a in text.split(",") if a.strip()] if text else None


def _gate_setup(kw: dict[str, Any], outputs: bool = True) -> tuple[Any, list[Any]]:
    """The gate's configuration and the output plan from --fail-on, --ignore-file (default
    .imgscanignore when present), --baseline, --policy, --format and --output, read before
    anything is pulled or scanned so that a mistake in any of them is a usage error."""
    from imgscan import api
    from imgscan.gate import default_ignore_file

    plan = api.plan_outputs(list(kw["formats"]), kw["output"]) if outputs else []
    gate = api.GateConfig.load(kw["fail_on"], kw["ignore_file"] or default_ignore_file(),
                               kw["baseline"], kw["policy"])
    return gate, plan


def _writer_options(kw: dict[str, Any]) -> Any:
    from imgscan.api import WriterOptions

    return WriterOptions(packages=kw["show_packages"], elf=kw["show_elf"], wide=kw["wide"])


def _judge(report: Any, gate: Any, plan: list[Any], kw: dict[str, Any]) -> int:
    """Gate and write one report, tell the verdict when a gate was asked for; the exit code."""
    from imgscan.api import gate_and_write

    outcome = gate_and_write(report, gate, plan, _writer_options(kw))
    if gate.judges:
        click.echo(outcome.gate.summary(), err=True)
    return outcome.exit_code


def _store(root: str | None, max_layer_size: int | None = None,
           max_entries: int | None = None, create: bool = False) -> Any:
    """The store. Only commands that import (pull, scan of a reference) create one at a
    --root or $IMGSCAN_ROOT that does not exist: elsewhere that is a typo, not a new store.
    The default location is made on first use whatever the command."""
    from imgscan.store.limits import ExtractLimits
    from imgscan.store.store import Store

    limits = ExtractLimits()
    if max_layer_size or max_entries:
        limits = ExtractLimits(max_bytes=max_layer_size or limits.max_bytes,
                               max_entries=max_entries or limits.max_entries)
    return Store(root, limits=limits, create=create or root is None)


@click.group(cls=ImgscanGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                 "max_content_width": 100})
@click.version_option(__version__, prog_name="imgscan")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars on a terminal.")
@click.option("--root", "global_root", type=click.Path(file_okay=False), metavar="DIR",
              help="Store directory for any command (as podman's --root); a command's own "
              "--root wins.")
def main(quiet: bool, global_root: str | None) -> None:
    """imgscan: a daemonless security scanner for container images.

    Images are imported into a file-locked, copy-on-write layer store that any number of
    processes can use at once; they are mounted read-only without being started, and
    analyzers report installed packages, secrets, risky permissions, ELF hardening and
    image configuration.

    \b
    Image references:
      oci:DIR[:REF|@N]              an OCI image layout directory
      oci-archive:FILE[:REF]        a tar of an OCI layout
      docker-archive:FILE[:REF|@N]  a 'docker save' archive
      docker://HOST/REPO[:TAG|@DIGEST]  a registry
      dir:PATH                      an unpacked root filesystem (scan only)
    IMAGE (an image already in the store) is a name[:tag], an image id or a unique id prefix.

    \b
    Examples:
      imgscan pull oci:./layout:1.0
      imgscan scan localhost/layout:1.0 --fail-on high
      imgscan mount localhost/layout:1.0
    """
    if quiet:
        os.environ["IMGSCAN_QUIET"] = "1"
    if global_root:  # the commands' --root reads $IMGSCAN_ROOT when not given
        os.environ["IMGSCAN_ROOT"] = global_root


# -- images --------------------------------------------------------------------------------
@main.command(epilog=EXIT_CODES)
@root_option
@platform_option
@limit_options
@registry_options
@scan_options
@click.option("--name", "names", multiple=True, metavar="NAME[:TAG]",
              help="Name the imported image (repeatable); default: the source's own names.")
@click.option("--vet", is_flag=True,
              help="Scan in quarantine first; the image enters the store only if the gate "
              "passes (see the scan options: --fail-on, --policy, ...).")
@click.argument("ref")
def pull(root: str | None, platform: str | None, names: Sequence[str], ref: str,
         max_layer_size: int, max_entries: int, vet: bool, **kw: Any) -> None:
    """Import an image into the store, verifying every blob and layer digest.

    Layers already in the store (shared with other images) are not imported again. On any
    error the store is left exactly as it was.

    \b
    Examples:
      imgscan pull oci:./layout:1.0
      imgscan pull docker-archive:app.tar --name app:1.0
      imgscan pull oci-archive:image.tar --platform linux/arm64
      imgscan pull docker://registry.example/app:1.4 --vet --fail-on high
    """
    from imgscan import api

    source_opts = _source_opts(ref, kw)
    store = _store(root, max_layer_size, max_entries, create=True)
    if not vet:
        ctx = click.get_current_context()
        given = [k for k in kw if ctx.get_parameter_source(k) not in
                 (click.core.ParameterSource.DEFAULT, None)]
        if given:
            raise click.UsageError("scan options such as --fail-on need --vet")
        rec = api.pull(ref, store=store, platform=platform, names=list(names) or None,
                       **source_opts)
        _tell_pulled(rec)
        return
    gate, plan = _gate_setup(kw)
    rec, _, code = api.vetted_pull(ref, store, lambda r: _judge(r, gate, plan, kw),
                                   platform=platform,
                                   names=list(names) or None,
                                   analyzers=_analyzer_names(kw["analyzers"]),
                                   options=_scan_options(kw), jobs=kw["jobs"], **source_opts)
    if rec is None:
        click.echo(f"imgscan: {ref} failed vetting; nothing was stored", err=True)
        sys.exit(code)
    _tell_pulled(rec)


def _tell_pulled(rec: Any) -> None:
    """The id on stdout (for scripts, as podman pull), the names it has on stderr."""
    names = ", ".join(rec.names) or "no name (use its id, or 'imgscan tag')"
    click.echo(f"imgscan: stored {rec.short_id} as {names}", err=True)
    click.echo(rec.id)


@main.command()
@root_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def images(root: str | None, fmt: str) -> None:
    """List the images in the store.

    \b
    Example:
      imgscan images --format json
    """
    from imgscan.api import list_images

    rows = list_images(_store(root))
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    from tabulate import tabulate

    table = [[r["id"].split(":", 1)[-1][:12], ", ".join(r["names"]) or "<none>", r["platform"],
              r["layers"], _human(r["size"]), r["created"][:19]] for r in rows]
    click.echo(tabulate(table, headers=["IMAGE ID", "NAMES", "PLATFORM", "LAYERS", "SIZE",
                                        "CREATED"]))


def _human(n: int) -> str:
    """Sizes in one unit system everywhere: the reports' binary units (KiB, MiB, GiB;
    reports.common.human_size, not imported here: the command line imports no writer)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


@main.command(epilog=EXIT_CODES)
@root_option
@platform_option
@registry_options
@scan_options
@click.option("--config", "show_config", is_flag=True, help="Print the image config.")
@click.option("--raw", is_flag=True, help="Print the raw manifest (or config with --config).")
@click.option("--no-tags", is_flag=True, help="docker://: do not list the repository's tags.")
@click.option("--vet", is_flag=True, help="Judge the image from its config alone (root user, "
              "secrets in Env and history, policy limits on size, age, labels) and exit by "
              "the gate; no layer is fetched.")
@click.argument("image")
def inspect(root: str | None, platform: str | None, show_config: bool, raw: bool,
            no_tags: bool, vet: bool, image: str, **kw: Any) -> None:
    """Show an image's manifest and config summary (skopeo inspect's key names).

    IMAGE is an image in the store or a reference (oci:…, docker-archive:…, docker://…);
    a reference is read in place, nothing is imported.

    \b
    Examples:
      imgscan inspect localhost/layout:1.0
      imgscan inspect oci:./layout:1.0 --config
      imgscan inspect docker://127.0.0.1:5000/app:1.4 --raw
      imgscan inspect docker://registry.example/app:1.4 --vet --fail-on high
    """
    from imgscan import api

    source_opts = _source_opts(image, kw)
    if vet:
        if not api.is_transport_ref(image) or image.startswith("dir:"):
            raise click.UsageError("--vet takes an image reference (docker://, oci:, ...)")
        gate, plan = _gate_setup(kw)
        report = api.vet_config(image, platform=platform, options=_scan_options(kw),
                                **source_opts)
        sys.exit(_judge(report, gate, plan, kw))
    target = api.inspect_target(image, None if api.is_transport_ref(image) else _store(root),
                                platform=platform, list_tags=not no_tags, **source_opts)
    img = target.image
    if raw:
        sys.stdout.buffer.write(img.raw_config if show_config else img.raw_manifest)
        sys.stdout.flush()
        return
    if show_config:
        click.echo(json.dumps(img.config, indent=4))
        return
    from imgscan.images.inspect import inspect_dict

    click.echo(json.dumps(inspect_dict(img, target.name, target.tag, target.repo_tags),
                          indent=4))


@main.command()
@root_option
@click.argument("image")
@click.argument("name")
def tag(root: str | None, image: str, name: str) -> None:
    """Add a name to an image (moving it from any other image that had it).

    \b
    Example:
      imgscan tag 3f2a9c1b0d4e myapp:stable
    """
    rec = _store(root).tag(image, name)
    click.echo(f"{rec.id} {' '.join(rec.names)}")


@main.command()
@root_option
@click.option("--force", is_flag=True, help="Unmount a mounted image first, and wait for "
              "scans reading it to finish, instead of refusing.")
@click.argument("images", nargs=-1, required=True)
def rmi(root: str | None, force: bool, images: Sequence[str]) -> None:
    """Remove images, and the layers no other image uses.

    A mounted image is refused (naming its mount point and count), and so is an image that
    a scan is reading (naming the scan's pid), unless --force.

    \b
    Example:
      imgscan rmi localhost/layout:1.0 3f2a9c1b
    """
    from imgscan.housekeeping import remove_images

    for rec in remove_images(_store(root), images, force=force):
        click.echo(f"removed {rec.id}")


@main.group()
def store() -> None:
    """Maintain the store: find and repair what a crash left, drop unused layers."""


@store.command("check")
@root_option
@click.option("--repair", is_flag=True, help="Remove what is incomplete or orphaned.")
def store_check(root: str | None, repair: bool) -> None:
    """Check the store for half-done imports, orphans and stale mount records.

    Exits 0 when the store is clean (or was repaired), 3 when problems remain.

    \b
    Example:
      imgscan store check --repair
    """
    from imgscan.housekeeping import check_store

    problems = check_store(_store(root), repair=repair)
    for p in problems:
        state = "repaired" if repair and p.repairable else ("repairable" if p.repairable
                                                            else "needs attention")
        click.echo(f"{p.kind}: {p.path}: {p.message} [{state}]")
    remaining = [p for p in problems if not (repair and p.repairable)]
    if not problems:
        click.echo("store is consistent")
    if remaining:
        sys.exit(3)


@store.command("gc")
@root_option
def store_gc(root: str | None) -> None:
    """Remove layers that no image uses, and their cached analysis results."""
    from imgscan.housekeeping import collect_garbage

    dropped = collect_garbage(_store(root))
    click.echo(f"removed {len(dropped)} unused layer(s)")


# -- mounts --------------------------------------------------------------------------------
@main.command()
@root_option
@click.option("--mountpoint", type=click.Path(file_okay=False),
              help="Mount here instead of under the store's run directory.")
@click.option("--driver", type=click.Choice(["auto", "overlay", "fuse-overlayfs"]),
              default="auto", show_default=True,
              help="Kernel overlayfs, fuse-overlayfs, or whichever works.")
@click.argument("image")
def mount(root: str | None, mountpoint: str | None, driver: str, image: str) -> None:
    """Mount an image read-only (nodev, nosuid) without starting it; print the path.

    Mounting a mounted image again returns the same path and raises its mount count, shared
    by every process using the store; 'imgscan umount' lowers it.

    \b
    Example:
      cd "$(imgscan mount localhost/layout:1.0)" && ls -l usr/bin
    """
    from imgscan.mount.mounts import MountTable

    rec = MountTable(_store(root)).mount(image, mountpoint, driver)
    click.echo(rec.path)


@main.command()
@root_option
@click.option("--force", is_flag=True, help="Unmount now whatever the count (detach if busy).")
@click.argument("target")
def umount(root: str | None, force: bool, target: str) -> None:
    """Lower an image's mount count; unmount when it reaches zero.

    TARGET is the image or its mount path.

    \b
    Example:
      imgscan umount localhost/layout:1.0
    """
    from imgscan.mount.mounts import MountTable

    rec = MountTable(_store(root)).unmount(target, force=force)
    if rec is not None and rec.count > 0:
        click.echo(f"{rec.path} still mounted (count {rec.count})")
    elif rec is not None:
        click.echo(f"unmounted {rec.path}")


@main.command()
@root_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def mounts(root: str | None, fmt: str) -> None:
    """List mounted images: image, path, count and driver."""
    from dataclasses import asdict

    from imgscan.mount.mounts import MountTable

    store = _store(root)
    recs = MountTable(store).records()
    names = {i.id: list(i.names) for i in store.images()}
    if fmt == "json":
        click.echo(json.dumps([asdict(r) | {"names": names.get(r.image_id, [])}
                               for r in recs], indent=2))
        return
    from tabulate import tabulate

    rows = [[r.image_id[7:19], ", ".join(names.get(r.image_id, [])), r.path, r.count,
             r.driver]
            for r in recs]
    click.echo(tabulate(rows, headers=["IMAGE ID", "NAMES", "PATH", "COUNT", "DRIVER"]))


# -- scanning ------------------------------------------------------------------------------
@main.command(epilog=EXIT_CODES)
@root_option
@platform_option
@registry_options
@scan_options
@limit_options
@click.option("--all", "scan_all", is_flag=True,
              help="Scan every image in the store (an audit): one report per image in "
              "--output-dir, and a summary table.")
@click.option("--output-dir", type=click.Path(file_okay=False),
              help="With --all: where the per-image reports go (default: here).")
@click.option("--atomic-scanin", type=click.Path(file_okay=False, exists=True),
              help="atomic scan: scan every rootfs directory under this one (one per image "
              "id, as atomic mounts them)...")
@click.option("--atomic-scanout", type=click.Path(file_okay=False),
              help="...and write each result as <scanout>/<id>/json.")
@click.argument("image", required=False)
def scan(root: str | None, platform: str | None, image: str | None, scan_all: bool,
         output_dir: str | None, atomic_scanin: str | None, atomic_scanout: str | None,
         **kw: Any) -> None:
    """Scan an image: packages, secrets, permissions, ELF hardening, configuration.

    IMAGE is an image in the store, a reference (imported first and kept for the next scan)
    or dir:PATH for an unpacked root filesystem. Nothing of the image is executed.

    \b
    Examples:
      imgscan scan localhost/layout:1.0
      imgscan scan oci:./layout:1.0 --format json -o report.json --fail-on high
      imgscan scan app:1.0 --format table --format sarif=app.sarif --format html=app.html
      imgscan scan dir:/srv/rootfs --analyzers dpkg,rpm --packages
      imgscan scan --all --format json --format html --output-dir audit/
      imgscan scan --atomic-scanin /scanin --atomic-scanout /scanout
    """
    modes = sum(bool(x) for x in (image, scan_all, atomic_scanin))
    if modes != 1:
        raise click.UsageError("give exactly one of IMAGE, --all or --atomic-scanin")
    if bool(atomic_scanin) != bool(atomic_scanout):
        raise click.UsageError("--atomic-scanin and --atomic-scanout go together")
    if atomic_scanin:
        sys.exit(_scan_atomic(atomic_scanin, atomic_scanout, kw))  # type: ignore[arg-type]
    if scan_all:
        sys.exit(_scan_all(root, output_dir, kw))
    assert image is not None
    from imgscan.api import is_transport_ref
    from imgscan.api import scan as do_scan

    gate, plan = _gate_setup(kw)
    source_opts = _source_opts(image, kw)
    store = None if image.startswith("dir:") else \
        _store(root, kw.pop("max_layer_size"), kw.pop("max_entries"),
               create=is_transport_ref(image))
    report = do_scan(image, store=store,
                     analyzers=_analyzer_names(kw["analyzers"]), platform=platform,
                     jobs=kw["jobs"], options=_scan_options(kw), **source_opts)
    sys.exit(_judge(report, gate, plan, kw))


def _scan_all(root: str | None, output_dir: str | None, kw: dict[str, Any]) -> int:
    """scan --all: the library's audit, then its summary table; the worst exit code."""
    from tabulate import tabulate

    from imgscan.api import audit

    _registry_opts(kw)
    formats = [f.split("=", 1)[0] for f in kw["formats"]] or ["json"]
    if any("=" in f for f in kw["formats"]) or kw["output"]:
        raise click.UsageError("with --all, give formats without =FILE and use --output-dir")
    gate, _ = _gate_setup(kw, outputs=False)
    result = audit(_store(root), formats=formats, output_dir=output_dir or ".", gate=gate,
                   analyzers=_analyzer_names(kw["analyzers"]), options=_scan_options(kw),
                   jobs=kw["jobs"], writer_options=_writer_options(kw))
    _tell_verdicts(result, gate)
    rows = [[e.label, e.short_id, "-", "error: " + e.error[:40], "-"] if e.error else
            [e.label, e.short_id, e.packages,
             " ".join(f"{k}:{n}" for k, n in e.counts.items() if n) or "none",
             ("FAIL" if e.failed_gate else "pass") if gate.judges else "—"]
            for e in result.entries]
    click.echo(tabulate(rows, headers=["IMAGE", "ID", "PACKAGES", "FINDINGS", "GATE"]))
    click.echo(f"reports in {os.path.abspath(result.output_dir)}")
    return result.exit_code


def _tell_verdicts(result: Any, gate: Any) -> None:
    if gate.judges:
        for e in result.entries:
            if e.verdict:
                click.echo(f"{e.label}: {e.verdict}", err=True)


def _scan_atomic(scanin: str, scanout: str, kw: dict[str, Any]) -> int:
    """``atomic scan`` scanner mode: /scanin/<id> rootfs dirs in, /scanout/<id>/json out."""
    from imgscan.api import scan_atomic

    _registry_opts(kw)
    gate, _ = _gate_setup(kw, outputs=False)
    result = scan_atomic(scanin, scanout, gate=gate, analyzers=_analyzer_names(kw["analyzers"]),
                         options=_scan_options(kw), jobs=kw["jobs"],
                         writer_options=_writer_options(kw))
    _tell_verdicts(result, gate)
    return result.exit_code


@main.command()
@registry_options
@click.option("--format", "fmt", type=click.Choice(["lines", "json"]), default="lines",
              show_default=True)
@click.argument("repository")
def tags(repository: str, fmt: str, **kw: Any) -> None:
    """List every tag of a registry repository (all pages).

    \b
    Example:
      imgscan tags docker://127.0.0.1:5000/app --tls-verify=false
    """
    if not repository.startswith("docker://"):
        raise click.UsageError("tags needs a docker://HOST/REPO reference")
    from imgscan.images.registry import list_tags

    found = list_tags(repository[len("docker://"):], **_registry_opts(kw))
    click.echo(json.dumps(found, indent=2) if fmt == "json" else "\n".join(found))


@main.command()
@click.option("--rules", "rule_dirs", multiple=True, type=click.Path(file_okay=False,
              exists=True), help="Extra rule directory (repeatable).")
@click.option("--disable-rule", "disabled_rules", multiple=True, metavar="ID")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def rules(rule_dirs: Sequence[str], disabled_rules: Sequence[str], fmt: str) -> None:
    """List the secret rules: built-in ones and those of --rules directories.

    \b
    Example:
      imgscan rules --rules ./my-rules --disable-rule generic-password
    """
    from imgscan.secrets.rules import load_rules

    rows = load_rules(tuple(rule_dirs), tuple(disabled_rules)).listing()
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    from tabulate import tabulate

    click.echo(tabulate([[r["id"], r["severity"], r["title"], r["source"]] for r in rows],
                        headers=["ID", "SEVERITY", "TITLE", "SOURCE"]))


@main.command("analyzers")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def analyzers_cmd(fmt: str) -> None:
    """List the installed analyzer plugins with their versions and distributions."""
    from imgscan.analyzers.registry import load_all

    plugins = load_all()
    rows = [{"name": p.name, "version": p.version, "kind": "image" if p.is_post else "file",
             "distribution": f"{p.spec.distribution} {p.spec.dist_version}",
             "description": p.cls.description} for p in plugins]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    from tabulate import tabulate

    click.echo(tabulate([list(r.values()) for r in rows],
                        headers=["NAME", "VERSION", "KIND", "DISTRIBUTION", "DESCRIPTION"]))


if __name__ == "__main__":  # pragma: no cover
    main()
