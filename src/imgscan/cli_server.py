"""``imgscan serve``, ``worker`` and ``audit``: imgscan beyond one machine.

Kept out of ``cli.py`` so that each command module stays small; like the rest of the command
line it only parses, calls the public API (``imgscan.server``, which imports Celery,
Starlette and redis-py only when these commands run) and renders.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from imgscan.clioptions import (
    EXIT_CODES,
    _analyzer_names,
    _registry_opts,
    platform_option,
    registry_options,
    root_option,
)


def queue_option(required: bool) -> Callable[..., Any]:
    return click.option("--queue", "queue_url", required=required, metavar="redis://HOST:PORT/DB",
                        envvar="IMGSCAN_QUEUE", help="The Redis of the Celery job queue "
                        "(also $IMGSCAN_QUEUE).")


@click.command()
@click.option("--listen", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT",
              help="Where Harbor reaches the adapter (0.0.0.0:8080 in a container).")
@queue_option(True)
@click.option("--api-key-file", type=click.Path(dir_okay=False, exists=True),
              help="Keys Harbor must present (one per line) as X-ScannerAdapter-API-Key, "
              "Bearer or Basic; without it, anyone who reaches --listen may enqueue scans.")
@click.option("--vulns", is_flag=True,
              help="Have the workers match vulnerabilities (each needs an OSV database: "
              "imgscan db import, worker --vulns-db); without it Harbor gets an empty "
              "vulnerability list with a note saying why.")
@click.option("--refresh-after", type=click.IntRange(1, 600), default=5, show_default=True,
              help="Seconds Harbor waits before asking again for a report that is not ready.")
@click.option("--tls-verify", type=click.BOOL, default=True, show_default=True,
              metavar="BOOL", help="Verify TLS of https:// registries Harbor sends.")
def serve(listen: str, queue_url: str, api_key_file: str | None, vulns: bool,
          refresh_after: int, tls_verify: bool) -> None:
    """Serve the Harbor Pluggable Scanner API v1.2; scans go to the queue.

    \b
    Example:
      imgscan serve --listen 0.0.0.0:8080 --queue redis://redis:6379/0 --api-key-file key
    """
    from imgscan.server import serve as run

    run(listen, queue_url, api_key_file=api_key_file, vulns=vulns,
        refresh_after=refresh_after, tls_verify=tls_verify)


@click.command()
@root_option
@queue_option(True)
@click.option("--cache", "cache_url", metavar="redis://HOST:PORT/DB|none",
              help="Shared per-layer result cache (default: the queue's Redis).")
@click.option("--concurrency", type=click.IntRange(1), default=2, show_default=True,
              help="Scans at once (processes; one per core).")
@click.option("--time-limit", type=click.IntRange(10), default=1800, show_default=True,
              metavar="SECONDS", help="Hard limit per scan (soft limit: 90% of it); the "
              "queue's visibility timeout and the job lease are derived from it.")
@click.option("--analyzers", metavar="NAME,...", help="Run only these analyzers.")
@click.option("--vulns-db", type=click.Path(dir_okay=False), envvar="IMGSCAN_VULNS_DB",
              help="The OSV database jobs that ask for vulnerabilities are matched against "
              "(default: the store's, see imgscan db import).")
@click.option("--loglevel", type=click.Choice(["debug", "info", "warning", "error"]),
              default="warning", show_default=True)
def worker(root: str | None, queue_url: str, cache_url: str | None, concurrency: int,
           time_limit: int, analyzers: str | None, vulns_db: str | None,
           loglevel: str) -> None:
    """Take scan jobs from the queue (run any number, on any machine).

    \b
    Example:
      imgscan worker --queue redis://redis:6379/0 --concurrency 2
    """
    from imgscan.server import worker as run

    cache = None if cache_url == "none" else cache_url or queue_url
    run(queue_url, root=root, cache_url=cache, concurrency=concurrency,
        time_limit=time_limit, analyzers=_analyzer_names(analyzers), vulns_db=vulns_db,
        loglevel=loglevel.upper())


@click.command(epilog=EXIT_CODES)
@root_option
@platform_option
@registry_options
@queue_option(False)
@click.option("--shard", metavar="k/N", envvar="IMGSCAN_SHARD",
              help="No queue: scan shard k of N here (a Kubernetes Indexed Job pod).")
@click.option("--output-dir", type=click.Path(file_okay=False), default=".",
              show_default=True, help="Where the per-image reports and summary.json go.")
@click.option("--format", "formats", multiple=True, metavar="FORMAT",
              help="Report format per image, repeatable (default json).")
@click.option("--cache", "cache_url", metavar="redis://HOST:PORT/DB",
              help="With --shard: share per-layer results through this Redis.")
@click.option("--analyzers", metavar="NAME,...", help="With --shard: only these analyzers.")
@click.option("--vulns", is_flag=True, help="Match vulnerabilities (workers' --vulns-db; with "
              "--shard, --vulns-db or the store's database).")
@click.option("--vulns-db", type=click.Path(dir_okay=False), envvar="IMGSCAN_VULNS_DB",
              help="With --shard: the OSV database to match against.")
@click.option("--fail-on", metavar="SEVERITY",
              help="Exit 1 when an image has a finding at or above this severity.")
@click.option("--timeout", type=click.FloatRange(1), metavar="SECONDS",
              help="With --queue: give up on jobs not finished by then (exit 3).")
@click.argument("registry")
def audit(root: str | None, platform: str | None, queue_url: str | None, shard: str | None,
          output_dir: str, formats: Sequence[str], cache_url: str | None,
          analyzers: str | None, vulns: bool, vulns_db: str | None, fail_on: str | None,
          timeout: float | None, registry: str, **kw: Any) -> None:
    """Audit every image of a registry: one job per manifest digest.

    REGISTRY is docker://HOST[/PREFIX]. With --queue, jobs go to imgscan workers; with
    --shard k/N, this process scans its share of the digests itself.

    \b
    Examples:
      imgscan audit docker://registry:5000 --queue redis://redis:6379/0 --output-dir audit/
      imgscan audit docker://registry:5000/team --shard 3/8 --output-dir audit/ --format html
    """
    from tabulate import tabulate

    from imgscan.server import ScanSettings, audit_registry, parse_shard

    if bool(queue_url) == bool(shard):
        raise click.UsageError("give exactly one of --queue and --shard")
    settings = ScanSettings(root=root, cache_url=cache_url, vulns_db=vulns_db,
                            analyzers=tuple(_analyzer_names(analyzers) or ()) or None)
    result = audit_registry(registry, output_dir=output_dir, formats=list(formats) or ["json"],
                            queue_url=queue_url, shard=parse_shard(shard) if shard else None,
                            settings=settings, platform=platform, fail_on=fail_on, vulns=vulns,
                            timeout=timeout, **_registry_opts(kw))
    rows = [[e.label, e.short_id, "-", "error: " + e.error[:40], "-"] if e.error else
            [e.label, e.short_id, e.packages,
             " ".join(f"{k}:{n}" for k, n in e.counts.items() if n) or "none",
             "FAIL" if e.failed_gate else "pass"] for e in result.entries]
    click.echo(tabulate(rows, headers=["IMAGE", "DIGEST", "PACKAGES", "FINDINGS", "GATE"]))
    click.echo(f"reports in {os.path.abspath(result.output_dir)}")
    sys.exit(result.exit_code)
