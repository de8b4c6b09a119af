"""Scan jobs: what a worker does with one, and where status and reports live (Redis).

Celery-free on purpose: the Celery task (``tasks.py``) and the queue-less ``--shard`` audit
both call ``scan_outputs``, and the HTTP API reads status through ``JobStore`` without
loading Celery's task code.

Idempotent per manifest digest. A job's ``key`` is the manifest digest plus what shapes its
output (formats, vulnerability matching). A worker that finds the key's result already there
just marks its job done; otherwise it must hold the key's lease (``SET NX`` with a TTL longer
than the hard time limit) to scan. Delivered twice (late ack after a killed worker, a
duplicate request), a job is scanned and its report written once: the second delivery finds
the lease taken and comes back later (``Busy``), or finds the result. A worker killed
mid-job leaves its lease to expire; the redelivered message is then taken by another worker.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

JOB = "imgscan:job:"
RESULT = "imgscan:result:"
LEASE = "imgscan:lease:"
REPORTS_WRITTEN = "imgscan:stats:reports"  # hash: key -> how many times its result was written

_RELEASE = """if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1]) else return 0 end"""


class Busy(Exception):
    """Another worker holds the job's lease: try again later."""


@dataclass(frozen=True)
class ScanSettings:
    """How a worker (or a shard) scans: the CLI's ``scan`` options that matter here."""

    root: str | None = None
    cache_url: str | None = None
    analyzers: tuple[str, ...] | None = None
    vulns_db: str | None = None
    time_limit: int = 1800
    result_ttl: int = 24 * 3600

    @property
    def soft_time_limit(self) -> int:
        """When the task is told to stop (``SoftTimeLimitExceeded``), before the hard kill."""
        return max(1, int(self.time_limit * 0.9))

    @property
    def lease_ttl(self) -> int:
        """Outlives the hard time limit, so a live job never loses its lease."""
        return self.time_limit + max(5, self.time_limit // 10)

    @property
    def visibility_timeout(self) -> int:
        """Longer than the lease: a message redelivered after a worker died finds the dead
        worker's lease expired (with Redis + late acks, a task longer than this runs again)."""
        return self.time_limit + 2 * max(5, self.time_limit // 10)


def job_key(digest: str, formats: Sequence[str], vulns: bool) -> str:
    shape = json.dumps({"formats": sorted(set(formats)), "vulns": vulns})
    return f"{digest}:{hashlib.sha256(shape.encode()).hexdigest()[:12]}"


def new_job(ref: str, digest: str, formats: Sequence[str], *, vulns: bool = False,
            label: str = "", creds: str | None = None, registry_token: str | None = None,
            tls_verify: bool = True, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """A job message. ``creds`` and ``registry_token`` travel in the message only, never in
    the status hash."""
    return {"id": uuid.uuid4().hex, "key": job_key(digest, formats, vulns), "ref": ref,
            "digest": digest, "formats": list(formats), "vulns": vulns, "label": label or ref,
            "creds": creds, "registry_token": registry_token, "tls_verify": tls_verify,
            "meta": meta or {}}


class JobStore:
    """Job status and results in Redis, each with a TTL."""

    def __init__(self, client: Any, ttl: int = 24 * 3600) -> None:
        self.r = client
        self.ttl = ttl

    def record(self, job: dict[str, Any]) -> None:
        """A queued job's status (before it is enqueued, so a fast worker finds it)."""
        fields = {"status": "queued", "key": job["key"], "label": job["label"],
                  "meta": json.dumps(job["meta"]), "updated": str(time.time())}
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(JOB + job["id"], mapping=fields)
        pipe.expire(JOB + job["id"], self.ttl)
        pipe.execute()

    def mark(self, job_id: str, status: str, error: str = "") -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(JOB + job_id, mapping={"status": status, "error": error,
                                         "updated": str(time.time())})
        pipe.expire(JOB + job_id, self.ttl)
        pipe.execute()

    def status(self, job_id: str) -> dict[str, str] | None:
        raw = self.r.hgetall(JOB + job_id)
        return {k.decode(): v.decode() for k, v in raw.items()} if raw else None

    def statuses(self, job_ids: Sequence[str]) -> list[dict[str, str] | None]:
        """Many statuses in one round trip (an audit polls every pending job)."""
        pipe = self.r.pipeline(transaction=False)
        for jid in job_ids:
            pipe.hgetall(JOB + jid)
        return [{k.decode(): v.decode() for k, v in raw.items()} if raw else None
                for raw in pipe.execute()]

    def forget(self, key: str) -> None:
        """Drop a result once gathered: Redis holds reports in flight, not an archive."""
        self.r.delete(RESULT + key)

    def result(self, key: str, fmt: str | None = None) -> dict[str, str] | None:
        """The key's stored outputs (format → text, plus ``summary``), or one of them."""
        if fmt is not None:
            v = self.r.hget(RESULT + key, fmt)
            return {fmt: v.decode()} if v is not None else None
        raw = self.r.hgetall(RESULT + key)
        return {k.decode(): v.decode() for k, v in raw.items()} if raw else None

    def has_result(self, key: str) -> bool:
        return bool(self.r.exists(RESULT + key))

    def reports_written(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.r.hgetall(REPORTS_WRITTEN).items()}


def run_job(job: dict[str, Any], store: JobStore, settings: ScanSettings,
            scan: Any = None) -> str:
    """Do one job: ``cached`` if the result was there, ``done``, or ``failed`` (the image
    could not be scanned: recorded, not retried). Raises ``Busy`` when another worker holds
    the lease. ``scan`` replaces ``scan_outputs`` (tests)."""
    from imgscan.errors import ImgscanError

    jid, key = job["id"], job["key"]
    if store.has_result(key):
        store.mark(jid, "done")
        return "cached"
    token = uuid.uuid4().hex
    if not store.r.set(LEASE + key, token, nx=True, ex=settings.lease_ttl):
        raise Busy(key)
    try:
        if store.has_result(key):  # finished between our check and the lease
            store.mark(jid, "done")
            return "cached"
        store.mark(jid, "running")
        try:
            outputs = (scan or scan_outputs)(job, settings)
        except ImgscanError as e:
            store.mark(jid, "failed", str(e))
            return "failed"
        pipe = store.r.pipeline(transaction=True)
        pipe.hset(RESULT + key, mapping=outputs)
        pipe.expire(RESULT + key, settings.result_ttl)
        pipe.hincrby(REPORTS_WRITTEN, key, 1)
        pipe.hset(JOB + jid, mapping={"status": "done", "error": "",
                                      "updated": str(time.time())})
        pipe.expire(JOB + jid, store.ttl)
        pipe.execute()
        return "done"
    finally:
        store.r.eval(_RELEASE, 1, LEASE + key, token)


# -- scanning, as `imgscan scan docker://…` does -------------------------------------------------
_PROCESS: dict[str, Any] = {}


def _process_store(settings: ScanSettings) -> Any:
    """One store per process (workers are forked: each child opens its own) with one job
    (a Celery pool child may not fork a pool of its own); it holds the local cache level."""
    from imgscan.api import open_store

    if "store" not in _PROCESS:
        _PROCESS["store"] = open_store(settings.root, jobs=1)
    return _PROCESS["store"]


def _process_cache(settings: ScanSettings) -> Any:
    from imgscan.server.cache import RedisLayerCache

    if settings.cache_url and "cache" not in _PROCESS:
        _PROCESS["cache"] = RedisLayerCache.from_url(settings.cache_url)
    return _PROCESS.get("cache")


def scan_report(job: dict[str, Any], settings: ScanSettings) -> Any:
    """The ``Report`` of the job's image: ``imgscan.api.scan`` with the worker's store and
    the shared layer cache, the job's pull credential and TLS choice."""
    from imgscan import api

    kw: dict[str, Any] = {"tls_verify": job.get("tls_verify", True)}
    for secret in ("creds", "registry_token"):
        if job.get(secret):
            kw[secret] = job[secret]
    if job.get("vulns"):
        kw.update(vulns=True, vulns_db=settings.vulns_db)
    return api.scan(job["ref"], store=_process_store(settings),
                    analyzers=list(settings.analyzers) if settings.analyzers else None,
                    jobs=1, cache=_process_cache(settings), **kw)


def render(report: Any, formats: Sequence[str]) -> dict[str, str]:
    """Each format's text, by imgscan's writers, plus a ``summary`` for audits."""
    from imgscan.reports.common import severity_counts
    from imgscan.reports.interface import get_writer

    out: dict[str, str] = {}
    for fmt in formats:
        buf = io.StringIO()
        get_writer(fmt).write(report, buf)
        out[fmt] = buf.getvalue()
    img = report.image
    out["summary"] = json.dumps({
        "id": img.id, "digest": img.digest, "packages": len(report.packages),
        "counts": {s.value: n for s, n in severity_counts(report.findings).items()},
        "layers": [lay.diff_id for lay in report.layers]})
    return out


def scan_outputs(job: dict[str, Any], settings: ScanSettings) -> dict[str, str]:
    return render(scan_report(job, settings), job["formats"])
