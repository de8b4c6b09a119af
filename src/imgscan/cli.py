"""The ``imgscan`` command line: parse, call the library, render. No logic lives here.

Exit codes: 0 passed; 1 the gate failed (a finding at or above --fail-on, or a policy rule);
2 usage error; 3 the image or the environment could not be read.
Heavy modules are imported inside the commands, so ``imgscan mount`` starts fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from imgscan._version import __version__
from imgscan.cli_listings import analyzers_cmd, rules, tags
from imgscan.cli_server import audit, serve, worker
from imgscan.cli_store import rmi, store, tag
from imgscan.cli_values import scan_one
from imgscan.cli_vulns import db, vulns_kwargs, vulns_options
from imgscan.clioptions import (
    EXIT_CODES,
    ImgscanGroup,
    _analyzer_names,
    _gate_setup,
    _human,
    _judge,
    _registry_opts,
    _scan_options,
    _source_opts,
    _store,
    _tell_verdicts,
    _writer_options,
    limit_options,
    platform_option,
    registry_options,
    root_option,
    scan_options,
)


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
      containers-storage:[DRIVER@GRAPH+RUN]IMAGE  podman's store, read in place
      docker-daemon:IMAGE           a Docker Engine's image ($DOCKER_HOST or
                                    /var/run/docker.sock)
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
        pulled = api.pull(ref, store=store, platform=platform, names=list(names) or None,
                          **source_opts)
        _tell_pulled(pulled)
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
@click.option("--source", default="imgscan", show_default=True,
              metavar="imgscan|containers-storage[:[DRIVER@GRAPH+RUN]]|docker-daemon",
              help="Whose images: imgscan's store, podman's (containers/storage) or a "
              "Docker Engine's.")
def images(root: str | None, fmt: str, source: str) -> None:
    """List the images in the store (or another tool's, with --source).

    \b
    Examples:
      imgscan images --format json
      imgscan images --source containers-storage
      imgscan images --source docker-daemon
    """
    from imgscan.api import list_images

    rows = list_images(_store(root)) if source == "imgscan" else list_images(source=source)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    from tabulate import tabulate

    table = [[r["id"].split(":", 1)[-1][:12], ", ".join(r["names"]) or "<none>", r["platform"],
              r["layers"], _human(r["size"]), r["created"][:19]] for r in rows]
    click.echo(tabulate(table, headers=["IMAGE ID", "NAMES", "PLATFORM", "LAYERS", "SIZE",
                                        "CREATED"]))


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
    click.echo(json.dumps(api.inspect_document(target), indent=4))


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
      imgscan mount containers-storage:docker.io/library/debian:12   # podman knows it
    """
    from imgscan import api

    if api.is_transport_ref(image):
        if mountpoint or driver != "auto":
            raise click.UsageError("containers-storage: images are mounted where podman "
                                   "mounts them; --mountpoint and --driver do not apply")
        click.echo(api.mount_other(image)[0])
        return
    do_mount = api.mount

    rec = do_mount(image, mountpoint, driver, store=_store(root))
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
      imgscan umount containers-storage:docker.io/library/debian:12
    """
    from imgscan import api

    if api.is_transport_ref(target):
        path, count = api.umount_other(target)
        click.echo(f"{path} still mounted (count {count})" if count else f"unmounted {path}")
        return
    unmount = api.unmount

    rec = unmount(target, force=force, store=_store(root))
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
    from imgscan.api import list_mounts

    store = _store(root)
    recs = list_mounts(store)
    names = {i.id: list(i.names) for i in store.images()}
    if fmt == "json":
        click.echo(json.dumps([r.as_dict() | {"names": names.get(r.image_id, [])}
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
@click.option("--cache", "cache_url", metavar="redis://HOST:PORT/DB",
              help="Share per-layer results with a fleet: a Redis level behind the store's "
              "cache (an unreachable Redis only costs a warning).")
@vulns_options
@click.option("--keep", is_flag=True,
              help="Import a reference into the store as well (as 'pull' does), instead of "
              "only streaming its layers.")
@click.argument("image", required=False)
def scan(root: str | None, platform: str | None, image: str | None, scan_all: bool,
         output_dir: str | None, atomic_scanin: str | None, atomic_scanout: str | None,
         keep: bool, cache_url: str | None, **kw: Any) -> None:
    """Scan an image: packages, secrets, permissions, ELF hardening, configuration.

    IMAGE is an image in the store, a reference (its layers streamed and analyzed without
    unpacking; --keep imports it too) or dir:PATH for an unpacked root filesystem. Nothing
    of the image is executed; per-layer results are cached in the store either way.

    \b
    Examples:
      imgscan scan localhost/layout:1.0
      imgscan scan oci:./layout:1.0 --format json -o report.json --fail-on high
      imgscan scan app:1.0 --format table --format sarif=app.sarif --format html=app.html
      imgscan scan dir:/srv/rootfs --analyzers dpkg,rpm --packages
      imgscan scan containers-storage:docker.io/library/debian:12   # in place
      imgscan scan docker-daemon:debian:12
      imgscan scan --all --format json --format html --output-dir audit/
      imgscan scan --atomic-scanin /scanin --atomic-scanout /scanout
      imgscan scan docker://registry:5000/app:1.0 --cache redis://redis:6379/1
      imgscan scan app:1.0 --vulns --fail-on high --only-fixed
    """
    vulns = vulns_kwargs(kw)
    if vulns and not image:
        raise click.UsageError("--vulns scans one IMAGE (not --all or --atomic-scanin yet)")
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
    sys.exit(scan_one(root, platform, image, keep, vulns, kw, lambda: _shared_cache(cache_url)))


def _shared_cache(url: str | None) -> Any:
    """``scan --cache``: the Redis layer cache (redis-py is loaded only then)."""
    if not url:
        return None
    from imgscan.server import open_cache

    return open_cache(url)


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


main.add_command(db)
for _command in (analyzers_cmd, rules, tags, tag, rmi, store, serve, worker, audit):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
