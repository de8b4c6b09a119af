"""The HTTP and TLS details under the registry client: TLS contexts from a certificate
directory, retry delays, short failure causes, giving connections back, and following
``Link`` headers. Private to ``imgscan.images.registry``."""

from __future__ import annotations

import email.utils
import errno
import os
import re
import ssl
import time
import urllib.parse

import urllib3
from urllib3.exceptions import HTTPError, SSLError

from imgscan.errors import ImageError

_MAX_DRAIN = 64 << 10


def _ssl_context(tls_verify: bool, cert_dir: str | None) -> ssl.SSLContext:
    """A verifying context with the system CAs plus ``cert_dir/*.crt``, or a non-verifying one.

    ``cert_dir`` follows containers-certs.d: ``*.crt`` are CAs, ``NAME.cert`` + ``NAME.key``
    a client certificate.
    """
    if not tls_verify:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context()
    if cert_dir:
        try:
            names = sorted(os.listdir(cert_dir))
        except OSError as e:
            raise ImageError(
                f"cannot read certificate directory {cert_dir}: {e.strerror}") from None
        for name in names:
            path = os.path.join(cert_dir, name)
            try:
                if name.endswith(".crt") and tls_verify:
                    ctx.load_verify_locations(cafile=path)
                elif name.endswith(".cert"):
                    key = path[: -len(".cert")] + ".key"
                    ctx.load_cert_chain(path, key)
            except (OSError, ssl.SSLError) as e:
                raise ImageError(f"cannot load certificate {path}: {e}") from None
    return ctx


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _os_reason(e: BaseException) -> str:
    """A short cause for a connection failure, without object addresses."""
    seen = e
    for _ in range(5):
        inner = seen.__cause__ or seen.__context__
        if isinstance(seen, OSError) and seen.errno is not None:
            if seen.errno == errno.ECONNREFUSED:
                return "connection refused"
            return (seen.strerror or str(seen)).lower()
        if inner is None:
            break
        seen = inner
    text = str(e)
    if "refused" in text.lower():
        return "connection refused"
    return text.split(": ", 1)[-1][:200]


def _ssl_reason(e: BaseException) -> str:
    text = str(e.__cause__ or e.__context__ or e) if isinstance(e, SSLError) else str(e)
    text = re.sub(r"\s*\(_ssl\.c:\d+\)", "", text)
    return text[:300]


def discard(resp: urllib3.BaseHTTPResponse) -> None:
    """Give a response's connection back: drained when little is left, else closed.

    A hostile or broken server can send an endless body on a 3xx, 4xx or 5xx; we never read
    more than ``_MAX_DRAIN`` of what we do not need, and never reuse a half-read connection.
    """
    remaining = getattr(resp, "length_remaining", None)
    try:
        if remaining is not None and remaining <= _MAX_DRAIN:
            resp.drain_conn()
        else:
            resp.close()
    except (HTTPError, OSError):
        resp.close()
    finally:
        resp.release_conn()


def _origin(url: str) -> tuple[str, str]:
    p = urllib.parse.urlsplit(url)
    return p.scheme, p.netloc.lower()


def _next_link(header: str | None) -> str | None:
    if not header:
        return None
    for part in header.split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") or "rel=next" in params.replace(" ", ""):
            return target.strip().strip("<>")
    return None
