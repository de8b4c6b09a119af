"""Registry authentication: anonymous, Basic, the Bearer token flow (FORMATS.md §3.2) and a
registry token given by the user (Harbor's pull credential), sent as ``Bearer`` without a
token server.

The client asks ``authorization(scopes)`` before each request and reports every 401 to
``on_unauthorized``; this module decides whether a retry can help. Credentials are looked up
lazily, only after a registry has asked for them, so anonymous pulls never read auth files or
run credential helpers. Tokens are cached per scope set until ``expires_in`` (at least 60 s).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from imgscan.images.registry.credentials import Credentials
from imgscan.images.registry.errors import RegistryAuthError

_MIN_TOKEN_LIFETIME = 60
_TOKEN_MARGIN = 5
_MAX_TOKEN_RESPONSE = 1 << 20

#: (method, url, headers, body) -> (status, body bytes); performed without registry auth
TokenFetch = Callable[[str, str, dict[str, str], bytes | None], tuple[int, bytes]]


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case
    params: dict[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` (RFC 7235): several challenges, quoted or token params."""
    out: list[Challenge] = []
    i, n = 0, len(header)
    current: Challenge | None = None

    def skip_ws_commas(j: int) -> int:
        while j < n and header[j] in " \t,":
            j += 1
        return j

    while True:
        i = skip_ws_commas(i)
        if i >= n:
            break
        start = i
        while i < n and header[i] not in " \t,=":
            i += 1
        token = header[start:i]
        j = i
        while j < n and header[j] in " \t":
            j += 1
        if j < n and header[j] == "=" and current is not None:
            j += 1
            while j < n and header[j] in " \t":
                j += 1
            if j < n and header[j] == '"':
                j += 1
                buf = []
                while j < n and header[j] != '"':
                    if header[j] == "\\" and j + 1 < n:
                        j += 1
                    buf.append(header[j])
                    j += 1
                value = "".join(buf)
                j += 1
            else:
                vstart = j
                while j < n and header[j] not in " \t,":
                    j += 1
                value = header[vstart:j]
            current.params[token.lower()] = value
            i = j
        elif j < n and header[j] == "=":
            # a parameter with no scheme before it: malformed, skip it
            while j < n and header[j] != ",":
                j += 1
            i = j
        else:
            current = Challenge(token.lower(), {})
            out.append(current)
    return out


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


class Authenticator:
    """Per-registry authentication state, shared by every thread of one client."""

    def __init__(
        self,
        registry: str,
        credentials: Callable[[], Credentials | None],
        fetch: TokenFetch,
        *,
        allow_plain_http_secrets: bool = False,
    ) -> None:
        self.registry = registry
        self._credentials_fn = credentials
        self._creds: Credentials | None = None
        self._creds_loaded = False
        self._fetch = fetch
        self._allow_plain = allow_plain_http_secrets
        self._lock = threading.Lock()
        self._mode = "anonymous"  # anonymous | basic | bearer | registry-token
        self._realm = ""
        self._service = ""
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._extra_scopes: set[str] = set()

    def __repr__(self) -> str:
        return f"Authenticator(registry={self.registry!r}, mode={self._mode!r})"

    def _credentials(self) -> Credentials | None:
        with self._lock:
            if not self._creds_loaded:
                self._creds = self._credentials_fn()
                self._creds_loaded = True
            return self._creds

    def has_credentials(self) -> bool:
        return self._credentials() is not None

    @property
    def mode(self) -> str:
        return self._mode

    def authorization(self, scopes: tuple[str, ...]) -> str | None:
        """The ``Authorization`` value for a request needing ``scopes`` (None: send none)."""
        if self._mode == "basic":
            creds = self._credentials()
            return creds.basic_header() if creds else None
        if self._mode == "registry-token":
            creds = self._credentials()
            return f"Bearer {creds.registry_token}" if creds else None
        if self._mode == "bearer":
            token = self._token(tuple(sorted({*scopes, *self._extra_scopes})))
            return f"Bearer {token}" if token else None
        return None

    def on_unauthorized(self, header: str | None, scopes: tuple[str, ...], attempt: int) -> bool:
        """Learn from a 401. True means: retry the request; False: give up (raise)."""
        challenges = parse_challenges(header or "")
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if attempt >= 2:
            return False
        creds = self._credentials() if bearer is not None else None
        if creds is not None and creds.registry_token:
            # a token issued elsewhere: send it once; a second 401 means it was refused
            with self._lock:
                if self._mode == "registry-token":
                    return False
                self._mode = "registry-token"
            return True
        if bearer is not None:
            realm = bearer.params.get("realm", "")
            parsed = urllib.parse.urlsplit(realm)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise RegistryAuthError(self.registry, "token realm in the 401 challenge is not "
                                        "an http(s) URL")
            with self._lock:
                if bearer.params.get("error") == "insufficient_scope" and bearer.params.get(
                    "scope"
                ):
                    self._extra_scopes.update(bearer.params["scope"].split(" "))
                self._mode = "bearer"
                self._realm = realm
                self._service = bearer.params.get("service", "")
                # a rejected or stale token: forget it so the retry fetches a fresh one
                self._tokens.clear()
            return True
        if basic is not None:
            creds = self._credentials()
            if creds is None or creds.registry_token:  # a bearer token is no password
                return False
            with self._lock:
                if self._mode == "basic" and attempt >= 1:
                    return False
                self._mode = "basic"
            return True
        return False

    def _token(self, scopes: tuple[str, ...]) -> str | None:
        now = time.monotonic()
        with self._lock:
            cached = self._tokens.get(scopes)
            if cached and cached[1] > now:
                return cached[0]
        token, lifetime = self._request_token(scopes)
        with self._lock:
            self._tokens[scopes] = (token, now + max(lifetime, _MIN_TOKEN_LIFETIME) - _TOKEN_MARGIN)
        return token

    def _request_token(self, scopes: tuple[str, ...]) -> tuple[str, float]:
        creds = self._credentials()
        realm = self._realm
        if creds is not None and realm.startswith("http://") and not self._allow_plain:
            raise RegistryAuthError(
                self.registry, "refusing to send credentials to a plain-http token realm "
                f"({urllib.parse.urlsplit(realm).netloc}) with TLS verification on")
        params: list[tuple[str, str]] = []
        if self._service:
            params.append(("service", self._service))
        params.extend(("scope", s) for s in scopes)
        headers = {"Accept": "application/json"}
        if creds is not None and creds.identity_token:
            form = [("grant_type", "refresh_token"), ("refresh_token", creds.identity_token),
                    ("client_id", "imgscan"), *params]
            body = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            status, data = self._fetch("POST", realm, headers, body)
        else:
            if creds is not None:
                params.append(("account", creds.username))
                headers["Authorization"] = creds.basic_header()
            sep = "&" if urllib.parse.urlsplit(realm).query else "?"
            url = realm + (sep + urllib.parse.urlencode(params) if params else "")
            status, data = self._fetch("GET", url, headers, None)
        if status in (401, 403):
            cause = "credentials rejected" if creds else "anonymous token refused"
            raise RegistryAuthError(self.registry, f"token server: {cause} ({status})")
        if status != 200:
            raise RegistryAuthError(self.registry, f"token server answered {status}")
        try:
            doc = json.loads(data[:_MAX_TOKEN_RESPONSE])
            token = doc.get("token") or doc.get("access_token")
            if not isinstance(token, str) or not token:
                raise ValueError
        except (ValueError, AttributeError, UnicodeDecodeError):
            raise RegistryAuthError(self.registry, "token server sent no token") from None
        expires = doc.get("expires_in")
        lifetime = float(expires) if isinstance(expires, int | float) and expires > 0 else 0.0
        return token, lifetime
