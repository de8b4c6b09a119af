"""A read-only Registry v2 / OCI distribution client over urllib3 (FORMATS.md §3.1).

Why by hand and not with ``requests``: we need control over exactly what is trusted. Every
manifest is checked against the digest it was asked by and against ``Docker-Content-Digest``;
blobs stream through ``HashingReader`` and resume with ``Range`` when a connection drops;
redirects are followed here so that ``Authorization`` never reaches another host; retries back
off exponentially, honour ``Retry-After`` and stop after a bounded count and time. One client
is shared by the threads that fetch layers in parallel: the pool and the auth state are
thread-safe, every blob has its own response.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import urllib3
from urllib3.exceptions import (
    HTTPError,
    InsecureRequestWarning,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    SSLError,
)
from urllib3.exceptions import (
    TimeoutError as U3Timeout,
)

from imgscan.errors import DigestMismatch, ImageError
from imgscan.images import mediatypes as mt
from imgscan.images.digest import parse_digest, sha256_digest, verify_bytes
from imgscan.images.interface import MAX_MANIFEST_BYTES
from imgscan.images.registry.auth import Authenticator, pull_scope
from imgscan.images.registry.blobs import BlobReader, _ResumableBody
from imgscan.images.registry.credentials import Credentials
from imgscan.images.registry.errors import (
    RegistryAuthError,
    RegistryConnectionError,
    RegistryDigestMismatch,
    RegistryError,
    RegistryNotFound,
    RegistryProtocolError,
    RegistryTLSError,
)
from imgscan.images.registry.transport import (
    _next_link,
    _origin,
    _os_reason,
    _retry_after,
    _ssl_context,
    _ssl_reason,
    discard,
)

log = logging.getLogger(__name__)

USER_AGENT = "imgscan/0.1"
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_MAX_ERROR_BODY = 64 << 10
_MAX_TAGS_PAGE = 8 << 20
_MAX_TAG_PAGES = 10_000
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_GENERIC_TYPES = frozenset({"", "application/json", "text/plain", "application/octet-stream"})
_ERROR_CODES = {
    "MANIFEST_UNKNOWN": "manifest unknown",
    "NAME_UNKNOWN": "repository name not known",
    "BLOB_UNKNOWN": "blob unknown",
    "DENIED": "access denied",
    "UNAUTHORIZED": "authentication required",
    "TOOMANYREQUESTS": "too many requests",
    "UNSUPPORTED": "operation unsupported",
}


@dataclass(frozen=True)
class ClientOptions:
    """Network bounds. The defaults suit the internet; tests shrink them."""

    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    max_retries: int = 4
    max_retry_time: float = 120.0
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_resumes: int = 5


@dataclass(frozen=True)
class FetchedManifest:
    data: bytes
    media_type: str
    digest: str


class RegistryClient:
    """HTTP access to one registry host, for any repository on it."""

    def __init__(
        self,
        registry: str,
        *,
        api_host: str | None = None,
        tls_verify: bool = True,
        cert_dir: str | None = None,
        credentials: Callable[[], Credentials | None] = lambda: None,
        options: ClientOptions | None = None,
    ) -> None:
        self.registry = registry
        self.api_host = api_host or registry
        self.tls_verify = tls_verify
        self.options = options or ClientOptions()
        ctx = _ssl_context(tls_verify, cert_dir)
        if not tls_verify:
            urllib3.disable_warnings(InsecureRequestWarning)
        self._pool = urllib3.PoolManager(
            num_pools=8, maxsize=8, block=False, ssl_context=ctx,
            cert_reqs="CERT_REQUIRED" if tls_verify else "CERT_NONE",
        )
        self._timeout = urllib3.Timeout(
            connect=self.options.connect_timeout, read=self.options.read_timeout)
        self.auth = Authenticator(
            registry, credentials, self._fetch_token, allow_plain_http_secrets=not tls_verify)
        self._base: str | None = None
        self._base_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RegistryClient({self.registry!r}, tls_verify={self.tls_verify})"

    def close(self) -> None:
        self._pool.clear()

    def _err(self, cls: type[RegistryError], cause: str) -> RegistryError:
        return cls(self.registry, cause)

    # -- transport ---------------------------------------------------------------------

    def _send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None = None
    ) -> urllib3.BaseHTTPResponse:
        """One logical request: retries with backoff, manual redirects; the caller reads."""
        opts = self.options
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers}
        start = time.monotonic()
        attempt = 0
        redirects = 0
        first_origin = _origin(url)
        while True:
            delay: float | None = None
            try:
                resp = self._pool.request(
                    method, url, headers=headers, body=body, preload_content=False,
                    redirect=False, retries=False, timeout=self._timeout, decode_content=False,
                )
            except SSLError as e:
                raise self._err(RegistryTLSError, f"TLS error: {_ssl_reason(e)}") from None
            except NameResolutionError:
                host = urllib.parse.urlsplit(url).hostname
                raise self._err(RegistryConnectionError, f"cannot resolve host {host}") from None
            except NewConnectionError as e:
                reason = _os_reason(e)
                if reason == "connection refused":
                    raise self._err(RegistryConnectionError, reason) from None
                last_error = reason
                delay = -1.0
            except (ProtocolError, U3Timeout, HTTPError, OSError) as e:
                last_error = "connection lost" if isinstance(e, ProtocolError) else (
                    "timed out" if isinstance(e, U3Timeout)
                    else _os_reason(e))
                delay = -1.0
            else:
                if resp.status in _REDIRECT_STATUS and resp.headers.get("Location"):
                    discard(resp)
                    redirects += 1
                    if redirects > _MAX_REDIRECTS:
                        raise self._err(RegistryProtocolError, "too many redirects")
                    new_url = urllib.parse.urljoin(url, resp.headers["Location"])
                    scheme = urllib.parse.urlsplit(new_url).scheme
                    if scheme not in ("http", "https"):
                        raise self._err(RegistryProtocolError, "redirect to a non-http URL")
                    if scheme == "http" and url.startswith("https:") and self.tls_verify:
                        raise self._err(RegistryProtocolError, "redirect from https to http")
                    if _origin(new_url) != first_origin:
                        headers = {k: v for k, v in headers.items()
                                   if k.lower() != "authorization"}
                    if resp.status == 303:
                        method, body = "GET", None
                    url = new_url
                    continue
                if resp.status not in _RETRY_STATUS:
                    return resp
                last_error = f"HTTP {resp.status}"
                delay = _retry_after(resp.headers.get("Retry-After"))
                discard(resp)
                if delay is None:
                    delay = -1.0
            if delay < 0:
                delay = min(opts.backoff * (2 ** attempt), opts.max_backoff)
            attempt += 1
            if attempt > opts.max_retries or time.monotonic() + delay - start > opts.max_retry_time:
                raise self._err(RegistryConnectionError,
                                f"giving up after {attempt} attempts: {last_error}")
            log.debug("registry %s: %s, retrying in %.1fs", self.registry, last_error, delay)
            time.sleep(delay)

    def _fetch_token(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, bytes]:
        resp = self._send(method, url, headers, body)
        try:
            return resp.status, resp.read(1 << 20)
        except (HTTPError, OSError):
            raise self._err(RegistryConnectionError, "token server: connection lost") from None
        finally:
            discard(resp)

    def base_url(self) -> str:
        """``https://host`` or, with TLS verification off and no TLS spoken, ``http://host``.

        Decided once by a ping of ``/v2/``, which also learns the auth challenge early.
        """
        with self._base_lock:
            if self._base is not None:
                return self._base
            base = f"https://{self.api_host}"
            try:
                resp = self._send("GET", base + "/v2/", {})
            except RegistryTLSError:
                if self.tls_verify:
                    raise
                base = f"http://{self.api_host}"
                resp = self._send("GET", base + "/v2/", {})
            try:
                if resp.status == 401:
                    self.auth.on_unauthorized(resp.headers.get("WWW-Authenticate"), (), 0)
                elif resp.status == 404:
                    raise self._err(RegistryProtocolError, "no registry API at /v2/ (404)")
            finally:
                discard(resp)
            self._base = base
            return base

    def request(
        self, method: str, path_or_url: str, scopes: tuple[str, ...], what: str,
        headers: dict[str, str] | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """A request with authentication; raises the matching error for any non-2xx status."""
        base = self.base_url()
        url = path_or_url if "://" in path_or_url else base + path_or_url
        attempt = 0
        while True:
            h = dict(headers or {})
            authz = self.auth.authorization(scopes)
            if authz:
                h["Authorization"] = authz
            resp = self._send(method, url, h)
            if resp.status == 401:
                challenge = resp.headers.get("WWW-Authenticate")
                discard(resp)
                if self.auth.on_unauthorized(challenge, scopes, attempt):
                    attempt += 1
                    continue
                failed = authz and self.auth.has_credentials()
                cause = "authentication failed" if failed else "authentication required"
                raise self._err(RegistryAuthError, f"{cause} (401) for {what}")
            if 200 <= resp.status < 300:
                return resp
            raise self._status_error(resp, what)

    def _status_error(self, resp: urllib3.BaseHTTPResponse, what: str) -> RegistryError:
        try:
            body = resp.read(_MAX_ERROR_BODY)
        except (HTTPError, OSError):
            body = b""
        finally:
            discard(resp)
        cause = ""
        try:
            errs = json.loads(body).get("errors")
            code = str(errs[0].get("code", ""))
            cause = _ERROR_CODES.get(code, code.lower().replace("_", " "))
        except (ValueError, AttributeError, TypeError, IndexError, KeyError,
                UnicodeDecodeError):
            pass
        status = resp.status
        if status == 404:
            return self._err(RegistryNotFound, f"{cause or 'not found'} (404) for {what}")
        if status == 403:
            return self._err(RegistryAuthError, f"{cause or 'access denied'} (403) for {what}")
        return self._err(RegistryProtocolError, f"{cause or 'unexpected status'} ({status}) "
                         f"for {what}")

    # -- API ---------------------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        """The exact manifest bytes, verified; ``reference`` is a tag or a digest."""
        by_digest = ":" in reference
        what = f"{repository}{'@' if by_digest else ':'}{reference}"
        resp = self.request("GET", f"/v2/{repository}/manifests/{reference}",
                            (pull_scope(repository),), what, {"Accept": mt.MANIFEST_ACCEPT})
        try:
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > MAX_MANIFEST_BYTES:
                raise self._err(RegistryProtocolError,
                                f"manifest larger than 4 MiB ({int(length)} bytes) for {what}")
            try:
                data = resp.read(MAX_MANIFEST_BYTES + 1)
            except (HTTPError, OSError):
                raise self._err(RegistryConnectionError,
                                f"connection lost reading the manifest for {what}") from None
            if len(data) > MAX_MANIFEST_BYTES:
                raise self._err(RegistryProtocolError, f"manifest larger than 4 MiB for {what}")
            content_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            header_digest = resp.headers.get("Docker-Content-Digest")
        finally:
            discard(resp)
        try:
            if by_digest:
                verify_bytes(data, reference, f"manifest {what}")
            if header_digest:
                parse_digest(header_digest)
                verify_bytes(data, header_digest, f"manifest {what} (Docker-Content-Digest)")
        except DigestMismatch as e:
            raise self._err(RegistryDigestMismatch, str(e)) from None
        except ImageError as e:
            raise self._err(RegistryProtocolError, str(e)) from None
        media_type = self._manifest_type(data, content_type, what)
        return FetchedManifest(data, media_type, reference if by_digest else sha256_digest(data))

    def _manifest_type(self, data: bytes, content_type: str, what: str) -> str:
        try:
            doc: Any = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise self._err(RegistryProtocolError, f"manifest for {what} is not JSON") from None
        body_type = doc.get("mediaType") if isinstance(doc, dict) else None
        if not isinstance(doc, dict):
            raise self._err(RegistryProtocolError, f"manifest for {what} is not a JSON object")
        known = mt.MANIFEST_TYPES | mt.INDEX_TYPES
        if content_type in mt.SCHEMA1_TYPES or doc.get("schemaVersion") == 1:
            raise self._err(RegistryProtocolError,
                            f"unsupported media type {content_type or 'schema 1'} for {what} "
                            "(Docker schema 1 manifests are not supported)")
        if content_type in _GENERIC_TYPES:
            content_type = body_type if isinstance(body_type, str) else ""
        if content_type not in known:
            raise self._err(RegistryProtocolError,
                            f"unsupported media type {content_type or '(none)'!s} for {what}")
        if isinstance(body_type, str) and body_type and body_type != content_type:
            raise self._err(RegistryProtocolError,
                            f"manifest for {what}: mediaType {body_type} disagrees with "
                            f"Content-Type {content_type}")
        return content_type

    def open_blob(self, repository: str, digest: str, size: int | None = None) -> BinaryIO:
        """Stream a blob, verified against ``digest`` (and ``size``) when read to EOF."""
        parse_digest(digest)
        what = f"{repository}@{digest}"
        body = _ResumableBody(self, repository, digest, what)
        return BlobReader(  # type: ignore[return-value]
            body, digest, f"registry {self.registry}: blob {what}", size=size)

    def _blob_response(self, repository: str, digest: str, what: str,
                       start: int) -> urllib3.BaseHTTPResponse:
        headers = {"Range": f"bytes={start}-"} if start else {}
        return self.request("GET", f"/v2/{repository}/blobs/{digest}",
                            (pull_scope(repository),), what, headers)

    def list_tags(self, repository: str, page_size: int | None = None) -> list[str]:
        """All tags, following ``Link: <…>; rel="next"`` pagination."""
        path = f"/v2/{repository}/tags/list"
        if page_size:
            path += f"?n={int(page_size)}"
        base = self.base_url()
        url = base + path
        tags: list[str] = []
        for _ in range(_MAX_TAG_PAGES):
            resp = self.request("GET", url, (pull_scope(repository),), repository)
            try:
                data = resp.read(_MAX_TAGS_PAGE + 1)
                link = resp.headers.get("Link")
            except (HTTPError, OSError):
                raise self._err(RegistryConnectionError,
                                f"connection lost listing tags of {repository}") from None
            finally:
                discard(resp)
            if len(data) > _MAX_TAGS_PAGE:
                raise self._err(RegistryProtocolError, f"tag list of {repository} over 8 MiB")
            try:
                page = json.loads(data).get("tags")
            except (ValueError, AttributeError, UnicodeDecodeError):
                raise self._err(RegistryProtocolError,
                                f"tag list of {repository} is not a JSON object") from None
            if page is not None and not isinstance(page, list):
                raise self._err(RegistryProtocolError, f"tag list of {repository}: bad 'tags'")
            tags.extend(t for t in page or [] if isinstance(t, str) and _TAG_RE.match(t))
            next_url = _next_link(link)
            if not next_url:
                return tags
            url = urllib.parse.urljoin(url, next_url)
            if _origin(url) != _origin(base):
                raise self._err(RegistryProtocolError, "tag list Link points to another host")
        raise self._err(RegistryProtocolError, f"tag list of {repository} never ends")
