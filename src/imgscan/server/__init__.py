"""imgscan beyond one machine: ``serve`` (Harbor Pluggable Scanner API), ``worker`` (Celery
on Redis), registry-wide ``audit`` (queue or ``--shard k/N``) and the shared layer cache.

Modules: ``harbor`` (the spec's types and documents, pure), ``api`` (HTTP), ``jobs`` (job
status, idempotency, scanning one job), ``tasks`` (Celery), ``cache`` (Redis layer cache),
``audit`` (catalog, dedupe, shard, fan-out). Workers scan through ``imgscan.api.scan``, as
``imgscan scan docker://…`` does; this package sits above the API (the API never imports
it), and the command line reaches it through the functions here. Starlette, uvicorn,
Celery and redis-py (the ``server`` extra) are imported only by the functions that need them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from imgscan.server.jobs import ScanSettings

__all__ = ["ScanSettings", "audit_registry", "open_cache", "parse_shard", "serve", "worker"]


def open_cache(url: str) -> Any:
    """The shared layer cache at a ``redis://`` URL, for ``imgscan.api.scan(cache=…)``."""
    from imgscan.server.cache import RedisLayerCache

    return RedisLayerCache.from_url(url)


def parse_shard(text: str) -> tuple[int, int]:
    """``k/N`` for ``audit --shard`` (see ``imgscan.server.audit.parse_shard``)."""
    from imgscan.server.audit import parse_shard as parse

    return parse(text)


def serve(listen: str, queue_url: str, *, api_key_file: str | None = None,
          vulns: bool = False, refresh_after: int = 5, tls_verify: bool = True) -> None:
    """Run the Harbor adapter on ``listen`` (``HOST:PORT``), enqueueing on ``queue_url``."""
    from imgscan.server.api import ServeConfig, load_api_keys
    from imgscan.server.api import serve as run

    keys = load_api_keys(api_key_file) if api_key_file else None
    run(listen, ServeConfig(queue_url, keys, vulns, refresh_after, tls_verify))


def worker(queue_url: str, *, root: str | None = None, cache_url: str | None = None,
           concurrency: int = 2, time_limit: int = 1800,
           analyzers: Sequence[str] | None = None, vulns_db: str | None = None,
           loglevel: str = "WARNING") -> None:
    """Run a worker for ``queue_url`` until stopped; scans go to the store at ``root`` and
    share per-layer results through ``cache_url``."""
    from imgscan.server.tasks import run_worker

    settings = ScanSettings(root=root, cache_url=cache_url,
                            analyzers=tuple(analyzers) if analyzers else None,
                            vulns_db=vulns_db, time_limit=time_limit)
    run_worker(queue_url, settings, concurrency, loglevel)


def audit_registry(target: str, **kw: Any) -> Any:
    """``imgscan.server.audit.audit_registry`` (see there)."""
    from imgscan.server.audit import audit_registry as run

    return run(target, **kw)
