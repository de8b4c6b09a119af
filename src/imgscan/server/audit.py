"""Registry-wide audits: enumerate a registry, de-duplicate by digest, fan out, gather.

``imgscan audit docker://HOST[/prefix]`` lists ``/v2/_catalog`` (paged), every tag of every
repository under the prefix, resolves each tag to the manifest the platform choice picks (as
``pull`` does), and keeps one target per manifest digest (tags naming the same image are
scanned once). Then either:

- ``queue_url``: one Celery job per digest for ``imgscan worker``s anywhere, whose reports
  are gathered from Redis; jobs lost with a Redis restart are put back (they are idempotent);
- ``shard=(k, N)``: no queue; this process scans the digests whose hash falls in shard k of
  N: the same split on every pod of a Kubernetes Indexed Job, whatever order the registry
  lists them in, so N pods cover every image exactly once.

Either way the output is ``scan --all``'s layout (``imgscan.pipeline.audit``): one report per
image per format in ``output_dir``, plus ``summary.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgscan.errors import ImgscanError, UsageError
from imgscan.pipeline import AuditEntry, AuditResult, safe_name
from imgscan.server.jobs import ScanSettings, new_job, render, scan_report

log = logging.getLogger("imgscan.server.audit")

CATALOG_PAGE = 100
MAX_CATALOG_PAGES = 10_000
_SEVERITIES = ("critical", "high", "medium", "low", "info")


@dataclass(frozen=True)
class AuditTarget:
    """One image to scan: its manifest digest, the reference a scan is given, its names."""

    digest: str
    ref: str
    names: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.names[0] if self.names else self.ref


def parse_shard(text: str) -> tuple[int, int]:
    """``k/N`` with 1 <= k <= N (``JOB_COMPLETION_INDEX`` + 1 of an Indexed Job)."""
    k, sep, n = text.partition("/")
    if not sep or not k.isdigit() or not n.isdigit() or not 1 <= int(k) <= int(n):
        raise UsageError(f"--shard {text}: expected k/N with 1 <= k <= N")
    return int(k), int(n)


def shard_of(digest: str, n: int) -> int:
    """The shard (1..n) a digest belongs to: a hash, so it does not depend on what else the
    registry holds or the order it lists it in."""
    return int(hashlib.sha256(digest.encode()).hexdigest()[:15], 16) % n + 1


def split_target(target: str) -> tuple[str, str]:
    """``docker://HOST[/prefix]`` → (host, prefix)."""
    if not target.startswith("docker://"):
        raise UsageError("audit needs a docker://HOST[/PREFIX] registry")
    host, _, prefix = target[len("docker://"):].partition("/")
    if not host or any(c in host for c in "@ "):
        raise UsageError(f"audit {target}: no registry host")
    return host, prefix.strip("/")


def _next_link(header: str | None) -> str | None:
    for part in (header or "").split(","):
        target, _, params = part.partition(";")
        if "rel=" in params and "next" in params:
            return target.strip().strip("<>")
    return None


def list_repositories(host: str, prefix: str = "", **registry_opts: Any) -> list[str]:
    """Every repository of ``/v2/_catalog`` (all pages) under ``prefix``."""
    from imgscan.images.registry import RegistryProtocolError, parse_reference
    from imgscan.images.registry.source import make_client

    client = make_client(parse_reference(f"{host}/catalog"), **registry_opts)
    url = f"/v2/_catalog?n={CATALOG_PAGE}"
    repos: list[str] = []
    try:
        for _ in range(MAX_CATALOG_PAGES):
            resp = client.request("GET", url, ("registry:catalog:*",), "the catalog")
            try:
                data = resp.read(8 << 20)
                link = resp.headers.get("Link")
            finally:
                resp.release_conn()
            try:
                page = json.loads(data).get("repositories") or []
            except (ValueError, AttributeError):
                raise RegistryProtocolError(host, "the catalog is not a JSON object") from None
            repos += [r for r in page if isinstance(r, str)]
            nxt = _next_link(link)
            if not nxt:
                break
            url = urllib.parse.urljoin(client.base_url() + url, nxt)
    finally:
        client.close()
    return sorted({r for r in repos if not prefix or r == prefix or r.startswith(prefix + "/")})


def enumerate_targets(target: str, platform: str | None = None,
                      progress: Callable[[str], None] | None = None,
                      **registry_opts: Any) -> list[AuditTarget]:
    """Every image under ``target``, one per manifest digest, sorted by digest."""
    from imgscan.api import open_source
    from imgscan.images.registry import list_tags

    host, prefix = split_target(target)
    by_digest: dict[str, list[str]] = {}
    for repo in list_repositories(host, prefix, **registry_opts):
        for tag in list_tags(f"{host}/{repo}", **registry_opts):
            name = f"{host}/{repo}:{tag}"
            img = open_source(f"docker://{name}", platform, **registry_opts)
            try:
                by_digest.setdefault(img.manifest_digest, []).append(name)
            finally:
                img.source.close()
            if progress:
                progress(name)
    out = []
    for digest, names in sorted(by_digest.items()):
        repo = names[0].split("/", 1)[1].rsplit(":", 1)[0]
        out.append(AuditTarget(digest, f"docker://{host}/{repo}@{digest}", tuple(sorted(names))))
    return out


def _entry(target: AuditTarget, outputs: dict[str, str], formats: Sequence[str],
           out_dir: Path, fail_on: str | None) -> AuditEntry:
    from imgscan.reports.interface import writer_class

    base = out_dir / safe_name(target.label)
    files = []
    for fmt in formats:
        path = Path(f"{base}{writer_class(fmt).extension}")
        path.write_text(outputs[fmt], encoding="utf-8", errors="surrogateescape")
        files.append(path)
    summary = json.loads(outputs["summary"])
    counts = summary["counts"]
    failed = bool(fail_on) and fail_on != "none" and any(
        counts.get(s, 0) for s in _SEVERITIES[:_SEVERITIES.index(fail_on) + 1])
    return AuditEntry(target.label, target.digest[7:19], 1 if failed else 0,
                      packages=summary["packages"], counts=counts,
                      verdict=f"findings at or above {fail_on}" if failed else "",
                      files=tuple(files))


def write_summary(result: AuditResult, targets: Sequence[AuditTarget], registry: str,
                  shard: tuple[int, int] | None) -> Path:
    by_label = {t.label: t for t in targets}
    doc = {"registry": registry, "shard": f"{shard[0]}/{shard[1]}" if shard else None,
           "images": [{"label": e.label, "digest": by_label[e.label].digest,
                       "names": list(by_label[e.label].names), "exit_code": e.exit_code,
                       "packages": e.packages, "counts": dict(e.counts), "error": e.error,
                       "files": [str(f) for f in e.files]} for e in result.entries]}
    path = result.output_dir / "summary.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def audit_registry(target: str, *, output_dir: str | Path = ".",
                   formats: Sequence[str] = ("json",), queue_url: str | None = None,
                   shard: tuple[int, int] | None = None,
                   settings: ScanSettings | None = None, platform: str | None = None,
                   fail_on: str | None = None, vulns: bool = False, poll: float = 0.5,
                   timeout: float | None = None, **registry_opts: Any) -> AuditResult:
    """Audit every image of a registry (see the module docstring). Returns the entries in
    digest order; ``summary.json`` lists them with every name each digest has."""
    from imgscan.progress import Progress
    from imgscan.reports.interface import writer_class

    if (queue_url is None) == (shard is None):
        raise UsageError("audit needs exactly one of --queue or --shard")
    if fail_on and fail_on not in (*_SEVERITIES, "none"):
        raise UsageError(f"--fail-on {fail_on}: expected one of {', '.join(_SEVERITIES)}, none")
    for f in formats:
        writer_class(f)  # unknown format: a usage error before anything runs
    settings = settings or ScanSettings()
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = enumerate_targets(target, platform, **registry_opts)
    if shard is not None:
        targets = [t for t in targets if shard_of(t.digest, shard[1]) == shard[0]]
    wanted = list(dict.fromkeys(["json", *formats]))
    entries: dict[str, AuditEntry] = {}
    with Progress(f"auditing {target}", len(targets)) as bar:
        if shard is not None:
            for t in targets:
                entries[t.digest] = _scan_here(t, wanted, formats, settings, out_dir, fail_on,
                                               vulns, registry_opts)
                bar.advance(t.label)
        else:
            assert queue_url is not None
            _fan_out(queue_url, targets, wanted, formats, out_dir, fail_on, vulns,
                     registry_opts, entries, bar, poll, timeout)
    result = AuditResult(tuple(entries[t.digest] for t in targets if t.digest in entries),
                         out_dir)
    write_summary(result, targets, target, shard)
    return result


def _scan_here(t: AuditTarget, wanted: list[str], formats: Sequence[str],
               settings: ScanSettings, out_dir: Path, fail_on: str | None, vulns: bool,
               registry_opts: dict[str, Any]) -> AuditEntry:
    job = new_job(t.ref, t.digest, wanted, vulns=vulns, label=t.label,
                  creds=registry_opts.get("creds"),
                  registry_token=registry_opts.get("registry_token"),
                  tls_verify=registry_opts.get("tls_verify", True))
    try:
        outputs = render(scan_report(job, settings), wanted)
    except ImgscanError as e:
        return AuditEntry(t.label, t.digest[7:19], 3, error=str(e))
    return _entry(t, outputs, formats, out_dir, fail_on)


def _fan_out(queue_url: str, targets: Sequence[AuditTarget], wanted: list[str],
             formats: Sequence[str], out_dir: Path, fail_on: str | None, vulns: bool,
             registry_opts: dict[str, Any], entries: dict[str, AuditEntry], bar: Any,
             poll: float, timeout: float | None) -> None:
    """One job per digest; gather as they finish. A Redis outage is waited out; a job whose
    status vanished (Redis restarted without its data) is enqueued again."""
    import redis

    from imgscan.server import tasks
    from imgscan.server.cache import connect
    from imgscan.server.jobs import JobStore

    app = tasks.make_app(queue_url)
    store = JobStore(connect(queue_url))
    jobs = {t.digest: new_job(t.ref, t.digest, wanted, vulns=vulns, label=t.label,
                              creds=registry_opts.get("creds"),
                  registry_token=registry_opts.get("registry_token"),
                              tls_verify=registry_opts.get("tls_verify", True))
            for t in targets}
    by_digest = {t.digest: t for t in targets}
    to_send = list(jobs)
    deadline = None if timeout is None else time.monotonic() + timeout
    warned = False
    while len(entries) < len(targets):
        if deadline is not None and time.monotonic() > deadline:
            for d in jobs:
                if d not in entries:
                    entries[d] = AuditEntry(by_digest[d].label, d[7:19], 3,
                                            error="timed out waiting for a worker")
            return
        try:
            while to_send:
                job = jobs[to_send[0]]
                store.record(job)
                tasks.enqueue(app, job)
                to_send.pop(0)
            pending = [d for d in jobs if d not in entries and d not in to_send]
            for d, st in zip(pending, store.statuses([jobs[d]["id"] for d in pending]),
                             strict=True):
                job = jobs[d]
                if st is None:
                    log.warning("imgscan audit: job for %s was lost (Redis restarted?): "
                                "enqueueing it again", by_digest[d].label)
                    to_send.append(d)
                elif st["status"] == "failed":
                    entries[d] = AuditEntry(by_digest[d].label, d[7:19], 3,
                                            error=st.get("error", ""))
                    bar.advance(by_digest[d].label)
                elif st["status"] == "done":
                    outputs = store.result(job["key"])
                    if outputs is None:
                        to_send.append(d)  # the result expired or was lost: scan again
                        continue
                    entries[d] = _entry(by_digest[d], outputs, formats, out_dir, fail_on)
                    store.forget(job["key"])
                    bar.advance(by_digest[d].label)
            warned = False
        except (redis.RedisError, OSError, ConnectionError) as e:
            if not warned:
                log.warning("imgscan audit: Redis is unreachable (%s); waiting", e)
                warned = True
        except Exception as e:  # kombu's publish errors after its own retries
            if type(e).__module__.split(".")[0] not in ("kombu", "celery", "redis"):
                raise
            if not warned:
                log.warning("imgscan audit: cannot enqueue (%s); waiting", e)
                warned = True
        # one status read per pending job per round: slow down for big audits so that
        # polling stays far below what one Redis serves (~100k reads/s)
        time.sleep(max(poll, (len(jobs) - len(entries)) / 20_000))
