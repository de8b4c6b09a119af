"""The listing commands: a registry repository's tags, the secret rules, the installed
analyzer plugins. Each asks ``imgscan.api`` and prints; registered on the main group by
``imgscan.cli``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

from imgscan.clioptions import _registry_opts, registry_options


@click.command()
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
    from imgscan.api import list_tags

    found = list_tags(repository[len("docker://"):], **_registry_opts(kw))
    click.echo(json.dumps(found, indent=2) if fmt == "json" else "\n".join(found))


@click.command()
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
    from imgscan.api import list_rules

    rows = list_rules(rule_dirs, disabled_rules)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    from tabulate import tabulate

    click.echo(tabulate([[r["id"], r["severity"], r["title"], r["source"]] for r in rows],
                        headers=["ID", "SEVERITY", "TITLE", "SOURCE"]))


@click.command("analyzers")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def analyzers_cmd(fmt: str) -> None:
    """List the installed analyzer plugins with their versions and distributions."""
    from imgscan.api import list_analyzers

    rows = list_analyzers()
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    from tabulate import tabulate

    click.echo(tabulate([list(r.values()) for r in rows],
                        headers=["NAME", "VERSION", "KIND", "DISTRIBUTION", "DESCRIPTION"]))
