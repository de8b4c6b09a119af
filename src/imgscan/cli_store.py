"""The commands that change or check imgscan's own store: ``tag``, ``rmi`` and the ``store``
group (check, gc). Each asks ``imgscan.api`` and prints; registered on the main group by
``imgscan.cli``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from imgscan.clioptions import _store, root_option


@click.command()
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


@click.command()
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
    from imgscan.api import remove_images

    for rec in remove_images(images, force=force, store=_store(root)):
        click.echo(f"removed {rec.id}")


@click.group()
def store() -> None:
    """Maintain the store: find and repair what a crash left, drop unused layers."""


@store.command("check")
@root_option
@click.option("--repair", is_flag=True, help="Remove what is incomplete or orphaned.")
def store_check(root: str | None, repair: bool) -> None:
    """Check the store for half-done imports, orphans, stale mount records and leases.

    Exits 0 when the store is clean (or was repaired), 3 when problems remain.

    \b
    Example:
      imgscan store check --repair
    """
    from imgscan.api import check_store

    problems = check_store(repair=repair, store=_store(root))
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
    from imgscan.api import collect_garbage

    dropped = collect_garbage(store=_store(root))
    click.echo(f"removed {len(dropped)} unused layer(s)")
