"""``imgscan serve``: the Harbor Pluggable Scanner API v1.2 over HTTP (Starlette + uvicorn).

The process only validates, enqueues and reads: ``POST /api/v1/scan`` records a job in Redis
and puts it on the Celery queue (answering 202 with its id), ``GET /api/v1/scan/{id}/report``
answers 302 with ``Refresh-After`` until a worker has stored the report, then renders it in
the type Harbor asks for. Requests are authenticated (``X-ScannerAdapter-API-Key``, Bearer
or Basic, the three ways Harbor can call an adapter), bounded in size and validated before
anything is queued; every refusal carries the spec's error body.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from imgscan.server import harbor as h
from imgscan.server.jobs import JobStore, new_job

log = logging.getLogger("imgscan.server.api")

#: what a worker renders for a Harbor job: the raw report and both SBOMs
HARBOR_FORMATS = ("json", "cyclonedx", "spdx")


@dataclass(frozen=True, repr=False)
class ServeConfig:
    """``imgscan serve``'s settings. ``api_keys`` None: no authentication (a warning)."""

    queue_url: str
    api_keys: frozenset[str] | None = None
    #: ask workers to match vulnerabilities (each needs an OSV database: worker --vulns-db)
    vulns: bool = False
    refresh_after: int = 5
    #: verify TLS for https registries (http:// registry URLs are plain HTTP anyway)
    tls_verify: bool = True
    job_ttl: int = 24 * 3600

    def __repr__(self) -> str:
        return f"ServeConfig({self.queue_url!r}, keys={'yes' if self.api_keys else 'no'})"


def load_api_keys(path: str) -> frozenset[str]:
    """One key per line (blank lines and ``#`` comments ignored); an empty file is an error
    rather than an open door."""
    from imgscan.errors import UsageError

    try:
        with open(path, encoding="utf-8") as f:
            keys = frozenset(s for s in (line.strip() for line in f)
                             if s and not s.startswith("#"))
    except OSError as e:
        raise UsageError(f"--api-key-file {path}: {e.strerror}") from None
    if not keys:
        raise UsageError(f"--api-key-file {path} holds no key")
    return keys


def _json(status: int, doc: Any, media_type: str,
          headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(doc), status_code=status, media_type=media_type,
                    headers=headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(status, h.error_body(message), h.ERROR, headers)


def _authorized(request: Request, keys: frozenset[str] | None) -> bool:
    if keys is None:
        return True
    given: list[str] = []
    api_key = request.headers.get("x-scanneradapter-api-key")
    if api_key:
        given.append(api_key.strip())
    scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        given.append(value)
    elif scheme.lower() == "basic" and value:
        try:
            text = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            text = ""
        if text:
            given += [text, text.partition(":")[2]]
    ok = False
    for g in given:  # compare with every key, in constant time each
        for k in keys:
            ok |= hmac.compare_digest(g.encode(), k.encode())
    return ok


def create_app(config: ServeConfig, store: JobStore | None = None,
               enqueue: Callable[[dict[str, Any]], None] | None = None) -> Starlette:
    """The ASGI app. ``store`` and ``enqueue`` default to Redis and Celery at
    ``config.queue_url`` (tests may pass their own)."""
    if store is None:
        from imgscan.server.cache import connect

        store = JobStore(connect(config.queue_url), config.job_ttl)
    if enqueue is None:
        from imgscan.server import tasks

        celery_app = tasks.make_app(config.queue_url)

        def enqueue(job: dict[str, Any]) -> None:
            tasks.enqueue(celery_app, job)

    jobs, send = store, enqueue

    def unauthorized() -> Response:
        return _error(401, "missing or wrong credentials (X-ScannerAdapter-API-Key, Bearer "
                      "or Basic)", {"WWW-Authenticate": 'Bearer realm="imgscan"'})

    async def metadata(request: Request) -> Response:
        if not _authorized(request, config.api_keys):
            return unauthorized()
        return _json(200, h.metadata(config.vulns), h.METADATA_V11)

    async def accept_scan(request: Request) -> Response:
        if not _authorized(request, config.api_keys):
            return unauthorized()
        ctype = h.normalize_mime(request.headers.get("content-type") or "")
        if ctype.split(";")[0] not in {t.split(";")[0] for t in h.SCAN_REQUEST_TYPES}:
            return _error(415, f"Content-Type must be {h.SCAN_REQUEST_TYPES[0]}")
        length = request.headers.get("content-length")
        if length and (not length.isdigit() or int(length) > h.MAX_REQUEST_BYTES):
            return _error(413, f"a scan request is at most {h.MAX_REQUEST_BYTES} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > h.MAX_REQUEST_BYTES:
                return _error(413, f"a scan request is at most {h.MAX_REQUEST_BYTES} bytes")
        try:
            doc = json.loads(bytes(body))
        except (ValueError, UnicodeDecodeError):
            return _error(400, "the body is not valid JSON")
        try:
            req = h.parse_scan_request(doc)
        except h.RequestError as e:
            return _error(e.status, e.message)
        label = f"{req.host}/{req.repository}" + (f":{req.tag}" if req.tag else
                                                  f"@{req.digest}")
        job = new_job(req.ref, req.digest, HARBOR_FORMATS, vulns=config.vulns,
                      label=label, creds=req.creds, registry_token=req.registry_token,
                      tls_verify=config.tls_verify and not req.plain_http,
                      meta={"artifact": req.artifact(), "sbom": list(req.sbom_media_types)})
        try:
            await run_in_threadpool(jobs.record, job)
            await run_in_threadpool(send, job)
        except Exception as e:  # Redis down or refusing: Harbor will retry
            log.warning("imgscan serve: cannot enqueue %s: %s", label, e)
            return _error(500, f"the job queue is unavailable: {type(e).__name__}")
        return _json(202, {"id": job["id"]}, h.SCAN_RESPONSE)

    async def get_report(request: Request) -> Response:
        if not _authorized(request, config.api_keys):
            return unauthorized()
        job_id = request.path_params["scan_request_id"]
        want = _wanted_type(request.headers.get("accept"))
        if want is None:
            return _error(501, f"no report of type {request.headers.get('accept')}; "
                          f"imgscan produces {', '.join(h.REPORT_TYPES)}")
        sbom_type = request.query_params.get("sbom_media_type")
        if want == h.SBOM_REPORT and sbom_type not in h.SBOM_MEDIA_TYPES:
            return _error(400, "an SBOM report needs ?sbom_media_type= "
                          f"{' or '.join(h.SBOM_MEDIA_TYPES)}")
        if len(job_id) > 64 or not job_id.isalnum():
            return _error(404, f"no scan request {job_id[:64]!r}")
        try:
            status = await run_in_threadpool(jobs.status, job_id)
        except Exception as e:
            return _error(500, f"the job store is unavailable: {type(e).__name__}")
        if status is None:
            return _error(404, f"no scan request {job_id!r} (unknown or expired)")
        if status["status"] in ("queued", "running"):
            return Response(status_code=302, headers={"Refresh-After": str(config.refresh_after)})
        if status["status"] == "failed":
            return _error(500, f"the scan failed: {status.get('error', '')}")
        fmt = "json" if want != h.SBOM_REPORT else h.SBOM_WRITERS[sbom_type or ""]
        try:
            found = await run_in_threadpool(jobs.result, status["key"], None)
        except Exception as e:
            return _error(500, f"the job store is unavailable: {type(e).__name__}")
        if not found or fmt not in found:
            return _error(500, "the report has expired; request a new scan")
        artifact = json.loads(status.get("meta") or "{}").get("artifact", {})
        raw = found["json"]
        if want == h.VULN_RAW:
            return Response(raw, media_type=h.VULN_RAW)
        report = json.loads(raw)
        if want == h.SBOM_REPORT:
            doc = h.sbom_report(json.loads(found[fmt]), sbom_type or "", report, artifact)
            return _json(200, doc, h.SBOM_REPORT)
        return _json(200, h.vulnerability_report(report, artifact, config.vulns), want)

    routes = [
        Route("/api/v1/metadata", metadata, methods=["GET"]),
        Route("/api/v1/scan", accept_scan, methods=["POST"]),
        Route("/api/v1/scan/{scan_request_id}/report", get_report, methods=["GET"]),
    ]
    return Starlette(routes=routes)


def _wanted_type(accept: str | None) -> str | None:
    """The report type an ``Accept`` header asks for (default: the v1.1 vulnerability
    report); None when it names only types imgscan does not produce."""
    if not accept or accept.strip() in ("*/*", "application/*"):
        return h.VULN_V11
    for part in _split_accept(accept):
        t = h.normalize_mime(part)
        if t in h.REPORT_TYPES:
            return t
        if t in ("*/*", "application/*"):
            return h.VULN_V11
    return None


def _split_accept(accept: str) -> list[str]:
    """``Accept`` split at commas, dropping ``q=`` (types keep their ``version=``)."""
    out = []
    for part in accept.split(","):
        kept = [p for p in part.split(";") if not p.strip().lower().startswith("q=")]
        out.append(";".join(kept))
    return out


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``) for ``--listen``."""
    from imgscan.errors import UsageError

    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {listen}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(listen: str, config: ServeConfig) -> None:
    """Run the adapter until interrupted."""
    import uvicorn

    host, port = parse_listen(listen)
    if config.api_keys is None:
        log.warning("imgscan serve: no --api-key-file: anyone who reaches %s can enqueue "
                    "scans", listen)
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning",
                access_log=False, timeout_graceful_shutdown=5)
