"""``imgscan db``: the offline vulnerability database's commands (import, status).

Kept out of ``cli.py`` so that each command module stays small; like the rest of the command
line it only parses, calls ``imgscan.api`` and renders.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

DB_HELP = "Vulnerability database file (default: <store>/vulns/osv.sqlite)."


def db_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--db", "db_path", type=click.Path(dir_okay=False), help=DB_HELP)(f)


def root_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--root", envvar="IMGSCAN_ROOT", type=click.Path(file_okay=False),
                        help="Store directory (default $IMGSCAN_ROOT, else the default "
                        "store); the database lives in it.")(f)


@click.group("db")
def db() -> None:
    """The offline vulnerability database (OSV records) that `scan --vulns` matches against."""


@db.command("import")
@root_option
@db_option
@click.argument("sources", nargs=-1, required=True, type=click.Path())
def db_import(root: str | None, db_path: str | None, sources: Sequence[str]) -> None:
    """Import OSV records: zip exports (osv-Debian.zip from
    https://osv-vulnerabilities.storage.googleapis.com/Debian/all.zip), directories of .json
    or .yaml records, single files. Re-importing is incremental by `modified`; the import is
    one transaction, so a failed one leaves the previous database as it was.

    \b
    Exit codes: 0 records were imported (or are already there); 2 usage error;
    3 nothing usable was imported.
    """
    from tabulate import tabulate

    from imgscan.api import import_vulns

    result = import_vulns(list(sources), root=root, db=db_path)
    rows = [[src, c.added, c.updated, c.unchanged, c.problems]
            for src, c in result.by_source.items()]
    click.echo(tabulate(rows, headers=["SOURCE", "ADDED", "UPDATED", "UNCHANGED",
                                       "PROBLEMS"]))
    for p in result.problems[:20]:
        click.echo(f"problem: {p.source}: {p.message}", err=True)
    if len(result.problems) > 20:
        click.echo(f"... and {len(result.problems) - 20} more problems", err=True)
    click.echo(f"{result.records} records ({result.added} added, {result.updated} updated, "
               f"{result.unchanged} unchanged) in {result.seconds:.1f}s into {result.path}",
               err=True)
    sys.exit(0 if result.records else 3)


@db.command("status")
@root_option
@db_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def db_status(root: str | None, db_path: str | None, fmt: str) -> None:
    """Ecosystems and record counts, newest `modified`, schema version. Exit 3 when there
    is no database."""
    from imgscan.api import vulns_status

    st = vulns_status(root=root, db=db_path)
    if fmt == "json":
        click.echo(json.dumps(dataclasses.asdict(st), indent=2))
        return
    from tabulate import tabulate

    click.echo(f"database:        {st.path}\nschema version:  {st.schema_version}\n"
               f"records:         {st.records} ({st.withdrawn} withdrawn)\n"
               f"newest modified: {st.newest_modified or '-'}\n"
               f"imported at:     {st.imported_at or '-'}\n")
    click.echo(tabulate(sorted(st.ecosystems.items()), headers=["ECOSYSTEM", "RECORDS"]))


def vulns_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """scan's options for vulnerability matching."""
    opts: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
        click.option("--vulns", is_flag=True,
                     help="Match packages against the offline OSV database "
                     "(see 'imgscan db import')."),
        db_option,
        click.option("--only-fixed", is_flag=True,
                     help="--vulns: only vulnerabilities with a fixed version."),
        click.option("--strict-reachability", is_flag=True,
                     help="--vulns: keep the severity of Go vulnerabilities whose vulnerable "
                     "functions are not in the binary (default: info)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def vulns_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    """Pop the --vulns options into ``imgscan.scan`` keyword arguments."""
    vulns, db_path = kw.pop("vulns"), kw.pop("db_path")
    only_fixed, strict = kw.pop("only_fixed"), kw.pop("strict_reachability")
    if not vulns and (db_path or only_fixed or strict):
        raise click.UsageError("--db, --only-fixed and --strict-reachability need --vulns")
    return {"vulns": vulns, "vulns_db": db_path, "only_fixed": only_fixed,
            "strict_reachability": strict} if vulns else {}
