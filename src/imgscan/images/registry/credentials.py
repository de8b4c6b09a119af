"""Where registry credentials come from: ``--creds``, auth files, credential helpers.

A registry token (``--registry-token``, Harbor's ``Bearer`` pull credential, an auth file's
``registrytoken``) is a bearer token already issued for the registry: it is sent as is, with
no token-server round trip.

The search order is containers/image's (FORMATS.md §3.2): an explicit ``USER:PASS`` or
registry token; then
``authfile`` (or ``$REGISTRY_AUTH_FILE``) in place of ``$XDG_RUNTIME_DIR/containers/auth.json``
and ``~/.config/containers/auth.json``; then ``~/.docker/config.json`` and ``~/.dockercfg``.
Within a file the most specific key wins (``host/ns/repo``, ``host/ns``, ``host``);
``credHelpers`` run ``docker-credential-<x> get``. Nothing here ever puts a secret into a
message, a log record or a repr.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field

from imgscan.errors import UsageError
from imgscan.images.registry.errors import RegistryAuthError
from imgscan.images.registry.reference import normalize_registry

_HELPER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HELPER_TIMEOUT = 30
_MAX_AUTH_FILE = 4 << 20


@dataclass(frozen=True, repr=False)
class Credentials:
    """A username and a secret; ``identity_token`` is a refresh token (``<token>`` user);
    ``registry_token`` is a bearer token for the registry itself (sent as is)."""

    username: str
    password: str = field(default="")
    identity_token: str = field(default="")
    registry_token: str = field(default="")

    def __repr__(self) -> str:
        return "Credentials(<redacted>)"

    __str__ = __repr__

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def parse_creds(creds: str) -> Credentials:
    """``USER:PASS`` as given to ``--creds``."""
    user, sep, password = creds.partition(":")
    if not sep or not user:
        raise UsageError("credentials must be given as USER:PASSWORD")
    return Credentials(user, password)


def _home(env: Mapping[str, str]) -> str:
    return env.get("HOME") or os.path.expanduser("~")


def auth_file_candidates(
    authfile: str | None, env: Mapping[str, str]
) -> list[tuple[str, bool]]:
    """(path, legacy_format) in search order."""
    home = _home(env)
    out: list[tuple[str, bool]] = []
    explicit = authfile or env.get("REGISTRY_AUTH_FILE")
    if explicit:
        out.append((explicit, False))
    else:
        runtime = env.get("XDG_RUNTIME_DIR") or f"/run/containers/{os.getuid()}"
        out.append((os.path.join(runtime, "containers", "auth.json"), False))
        config_home = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        out.append((os.path.join(config_home, "containers", "auth.json"), False))
    out.append((os.path.join(home, ".docker", "config.json"), False))
    out.append((os.path.join(home, ".dockercfg"), True))
    return out


def normalize_key(key: str) -> str:
    """``https://index.docker.io/v1/`` -> ``docker.io``; ``Quay.io/org`` keeps its path."""
    if key.startswith(("http://", "https://")):
        key = key.split("://", 1)[1].split("/", 1)[0]
    host, sep, path = key.partition("/")
    host = normalize_registry(host)
    return f"{host}{sep}{path}".rstrip("/")


def lookup_keys(registry: str, repository: str) -> list[str]:
    """Most specific first: ``host/a/b``, ``host/a``, ``host``."""
    parts = repository.split("/")
    keys = [f"{registry}/{'/'.join(parts[:i])}" for i in range(len(parts), 0, -1)]
    return [*keys, registry]


def _load(path: str) -> dict | None:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_AUTH_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise RegistryAuthError("auth", f"cannot read auth file {path}: {e.strerror}") from None
    if len(data) > _MAX_AUTH_FILE:
        raise RegistryAuthError("auth", f"auth file {path} is larger than 4 MiB")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise RegistryAuthError("auth", f"auth file {path} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise RegistryAuthError("auth", f"auth file {path} is not a JSON object")
    return doc


def _decode_entry(entry: object, path: str, key: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    token = entry.get("identitytoken")
    bearer = entry.get("registrytoken")
    if isinstance(bearer, str) and bearer:
        return Credentials("<token>", registry_token=bearer)
    raw = entry.get("auth")
    user = password = ""
    if isinstance(raw, str) and raw:
        try:
            decoded = base64.b64decode(raw, validate=True).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise RegistryAuthError(
                "auth", f"auth file {path}: entry {key!r} has a malformed 'auth' value"
            ) from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise RegistryAuthError(
                "auth", f"auth file {path}: entry {key!r} 'auth' is not base64 of USER:PASS"
            )
    elif isinstance(entry.get("username"), str):
        user, password = entry["username"], str(entry.get("password") or "")
    if isinstance(token, str) and token:
        return Credentials(user or "<token>", "", token)
    if user:
        return Credentials(user, password)
    return None


def run_helper(suffix: str, server: str, env: Mapping[str, str]) -> Credentials | None:
    """``docker-credential-<suffix> get`` with the server on stdin; None if it has nothing."""
    if not _HELPER_RE.match(suffix):
        raise RegistryAuthError(server, f"invalid credential helper name {suffix!r}")
    prog = f"docker-credential-{suffix}"
    try:
        proc = subprocess.run(
            [prog, "get"], input=server.encode(), capture_output=True,
            timeout=_HELPER_TIMEOUT, env=dict(env), check=False,
        )
    except FileNotFoundError:
        raise RegistryAuthError(server, f"credential helper {prog} not found in PATH") from None
    except subprocess.TimeoutExpired:
        raise RegistryAuthError(server, f"credential helper {prog} timed out") from None
    except OSError as e:
        raise RegistryAuthError(server, f"credential helper {prog}: {e.strerror}") from None
    if proc.returncode != 0:
        if b"credentials not found" in proc.stdout.lower():
            return None
        raise RegistryAuthError(server, f"credential helper {prog} failed (exit {proc.returncode})")
    try:
        doc = json.loads(proc.stdout)
        user, secret = doc["Username"], doc["Secret"]
        if not isinstance(user, str) or not isinstance(secret, str):
            raise TypeError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise RegistryAuthError(
            server, f"credential helper {prog} printed no credentials") from None
    if user == "<token>":
        return Credentials(user, "", secret)
    return Credentials(user, secret)


def parse_registry_token(token: str) -> Credentials:
    """A bearer token as given to ``--registry-token`` (a ``Bearer `` prefix is accepted)."""
    scheme, sep, rest = token.strip().partition(" ")
    value = rest.strip() if sep and scheme.lower() == "bearer" else token.strip()
    if not value or any(c.isspace() or ord(c) < 0x21 for c in value):
        raise UsageError("a registry token must be one word of printable characters")
    return Credentials("<token>", registry_token=value)


def find_credentials(
    registry: str,
    repository: str,
    *,
    creds: str | None = None,
    registry_token: str | None = None,
    authfile: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Credentials | None:
    """The credentials for ``registry/repository``, or None for anonymous access."""
    if creds is not None and registry_token is not None:
        raise UsageError("give either credentials (USER:PASS) or a registry token, not both")
    if registry_token is not None:
        return parse_registry_token(registry_token)
    if creds is not None:
        return parse_creds(creds)
    env = os.environ if env is None else env
    registry = normalize_registry(registry)
    keys = lookup_keys(registry, repository)
    for path, legacy in auth_file_candidates(authfile, env):
        doc = _load(path)
        if doc is None:
            continue
        helpers = {} if legacy else doc.get("credHelpers") or {}
        if isinstance(helpers, dict):
            for hkey, suffix in helpers.items():
                if isinstance(suffix, str) and normalize_key(str(hkey)) == registry:
                    found = run_helper(suffix, registry, env)
                    if found is not None:
                        return found
        auths = doc if legacy else doc.get("auths") or {}
        if not isinstance(auths, dict):
            continue
        normalized: dict[str, object] = {}
        for k, v in auths.items():
            normalized.setdefault(normalize_key(str(k)), v)
        for key in keys:
            if key in normalized:
                found = _decode_entry(normalized[key], path, key)
                if found is not None:
                    return found
    return None
