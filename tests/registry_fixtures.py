"""Real registries for tests: Debian's ``docker-registry`` on 127.0.0.1, anonymous, htpasswd,
token-auth (with a JWT token server run here) and TLS; and a fault-injecting proxy.

Every server binds 127.0.0.1 on a free port and is stopped by the context manager that
started it. Imported by the registry tests (no conftest: the lead owns it).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.client
import http.server
import json
import os
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

STARTUP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class KeyPair:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    def write(self, directory: str, stem: str) -> tuple[str, str]:
        cert_path = os.path.join(directory, f"{stem}.crt")
        key_path = os.path.join(directory, f"{stem}.key")
        with open(cert_path, "wb") as f:
            f.write(self.cert.public_bytes(serialization.Encoding.PEM))
        with open(key_path, "wb") as f:
            f.write(self.key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
        return cert_path, key_path


def self_signed(common_name: str = "127.0.0.1") -> KeyPair:
    """A self-signed RSA certificate valid for 127.0.0.1 and localhost."""
    import ipaddress

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(key, cert)


def wait_port(port: int, proc: subprocess.Popen | None, log_path: str | None) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            text = ""
            if log_path:
                with open(log_path, errors="replace") as f:
                    text = f.read()[-2000:]
            raise RuntimeError(f"registry exited with {proc.returncode}: {text}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {STARTUP_TIMEOUT}s")


@dataclass
class Registry:
    port: int
    storage: str
    log_path: str
    proc: subprocess.Popen
    scheme: str = "http"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def access_log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def requests(self) -> list[str]:
        """Request lines ("GET /v2/... HTTP/1.1") of the access log."""
        out = []
        for line in self.access_log().splitlines():
            if '"GET ' in line or '"HEAD ' in line:
                out.append(line.split('"')[1])
        return out


@contextlib.contextmanager
def run_registry(
    workdir: str,
    storage: str | None = None,
    auth: dict[str, Any] | None = None,
    tls: tuple[str, str] | None = None,
) -> Iterator[Registry]:
    """``docker-registry serve`` on a free 127.0.0.1 port, stopped (by PID) at exit."""
    port = free_port()
    tag = f"reg{port}"
    storage = storage or os.path.join(workdir, f"{tag}-storage")
    os.makedirs(storage, exist_ok=True)
    http_cfg: dict[str, Any] = {"addr": f"127.0.0.1:{port}"}
    if tls:
        http_cfg["tls"] = {"certificate": tls[0], "key": tls[1]}
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": storage}, "delete": {"enabled": True}},
        "http": http_cfg,
    }
    if auth:
        config["auth"] = auth
    cfg_path = os.path.join(workdir, f"{tag}.yml")
    with open(cfg_path, "w") as f:
        json.dump(config, f)  # JSON is YAML
    log_path = os.path.join(workdir, f"{tag}.log")
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(["docker-registry", "serve", cfg_path], stdout=logf,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_port(port, proc, log_path)
        yield Registry(port, storage, log_path, proc, "https" if tls else "http")
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def skopeo_push(layout: str, dest: str, *, all_images: bool = False, fmt: str | None = None,
                creds: str | None = None) -> None:
    cmd = ["skopeo", "copy", "-q", "--dest-tls-verify=false"]
    if all_images:
        cmd.append("--all")
    if fmt:
        cmd += ["--format", fmt]
    if creds:
        cmd += ["--dest-creds", creds]
    cmd += [f"oci:{layout}:latest", f"docker://{dest}"]
    subprocess.run(cmd, check=True, timeout=60, capture_output=True)


def skopeo_inspect(ref: str, *extra: str) -> dict[str, Any]:
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", *extra, f"docker://{ref}"],
                         check=True, timeout=60, capture_output=True)
    return json.loads(out.stdout)


def htpasswd_line(user: str, password: str) -> str:
    out = subprocess.run(["htpasswd", "-Bbn", user, password], check=True, timeout=30,
                         capture_output=True, text=True)
    return out.stdout.strip() + "\n"


# -- threaded HTTP servers --------------------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextlib.contextmanager
def serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:
        pass


# -- token server -----------------------------------------------------------------------------


@dataclass
class TokenServer:
    """Issues RS256 JWTs with an ``x5c`` header (registry 2.8 verifies the chain against its
    ``rootcertbundle``), ``iss``/``aud``/``exp``/``nbf``/``iat``/``jti`` and ``access``."""

    keys: KeyPair
    issuer: str = "imgscan-test-issuer"
    service: str = "imgscan-test-registry"
    users: dict[str, str] = field(default_factory=dict)
    anonymous_pull: bool = False
    use_access_token_key: bool = False
    expires_in: int | None = 300
    #: grant only these actions (None: what was asked), to provoke insufficient_scope
    grant_override: Callable[[str, list[str]], list[str]] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def sign(self, claims: dict[str, Any]) -> str:
        der = self.keys.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        signing_input = (b64url(json.dumps(header).encode()) + "."
                         + b64url(json.dumps(claims).encode()))
        sig = self.keys.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(sig)

    def issue(self, scopes: list[str], user: str | None) -> str:
        now = int(time.time())
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            typ, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1].split(",")
            if user is None and not self.anonymous_pull:
                actions = []
            elif user is None:
                actions = [a for a in actions if a == "pull"]
            if self.grant_override:
                actions = self.grant_override(name, actions)
            access.append({"type": typ, "name": name, "actions": actions})
        claims = {"iss": self.issuer, "sub": user or "", "aud": self.service,
                  "exp": now + 600, "nbf": now - 10, "iat": now,
                  "jti": b64url(os.urandom(12)), "access": access}
        token = self.sign(claims)
        self.issued.append(token)
        return token

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        ts = self

        class H(_QuietHandler):
            def do_GET(self) -> None:
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                authz = self.headers.get("Authorization")
                user = None
                if authz:
                    try:
                        u, _, p = base64.b64decode(authz.split(" ", 1)[1]).decode().partition(
                            ":")
                    except Exception:
                        u, p = "", ""
                    if ts.users.get(u) != p:
                        self._reply(401, {"details": "bad credentials"})
                        return
                    user = u
                ts.requests.append({"scope": q.get("scope", []), "service": q.get("service"),
                                    "account": q.get("account"), "user": user})
                if q.get("service") != [ts.service]:
                    self._reply(400, {"details": "bad service"})
                    return
                token = ts.issue(q.get("scope", []), user)
                body: dict[str, Any] = {"access_token" if ts.use_access_token_key else "token":
                                        token}
                if ts.expires_in is not None:
                    body["expires_in"] = ts.expires_in
                self._reply(200, body)

            def _reply(self, status: int, doc: dict[str, Any]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return H

    def registry_auth(self, bundle_path: str) -> dict[str, Any]:
        with open(bundle_path, "wb") as f:
            f.write(self.keys.cert.public_bytes(serialization.Encoding.PEM))
        return {"token": {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                          "rootcertbundle": bundle_path}}


@contextlib.contextmanager
def run_token_server(ts: TokenServer) -> Iterator[TokenServer]:
    with serve(ts.handler()) as port:
        ts.port = port
        yield ts


# -- fault-injecting proxy ---------------------------------------------------------------------


@dataclass
class Fault:
    """Apply ``action`` to the next ``times`` requests whose path contains ``match``.

    actions: ``truncate`` (full Content-Length, half the body, then close), ``corrupt`` (flip a
    byte), ``status`` (answer ``status`` with ``headers``), ``drop`` (close with no answer),
    ``body`` (answer 200 with ``body``/``headers``, no upstream), ``redirect`` (307 to
    ``location`` + the path).
    """

    match: str
    action: str
    times: int = 1
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    location: str = ""
    method: str = "GET"
    chunked: bool = False


@dataclass
class Proxy:
    upstream: str  # host:port
    faults: list[Fault] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    #: added to requests on the redirected path (the proxy's own upstream credentials)
    redirect_auth: str | None = None
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def take(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.times > 0 and f.match in path and f.method == method:
                    f.times -= 1
                    return f
        return None

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        px = self

        class H(_QuietHandler):
            def do_HEAD(self) -> None:
                self._handle()

            def do_GET(self) -> None:
                self._handle()

            def _handle(self) -> None:
                path = self.path
                hdrs = {k: v for k, v in self.headers.items()}
                redirected = path.startswith("/redirected")
                with px.lock:
                    px.log.append({"method": self.command, "path": path, "headers": dict(hdrs),
                                   "host": self.headers.get("Host")})
                if redirected:
                    path = path[len("/redirected"):]
                    hdrs.pop("Authorization", None)
                    if px.redirect_auth:
                        hdrs["Authorization"] = px.redirect_auth
                fault = None if redirected else px.take(self.command, path)
                if fault and fault.action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault and fault.action == "status":
                    self._send(fault.status, fault.headers, b'{"errors":[]}')
                    return
                if fault and fault.action == "body":
                    self._send(200, fault.headers, fault.body, chunked=fault.chunked)
                    return
                if fault and fault.action == "redirect":
                    self._send(307, {"Location": fault.location + "/redirected" + path}, b"")
                    return
                conn = http.client.HTTPConnection(px.upstream, timeout=10)
                hdrs.pop("Host", None)
                hdrs["Host"] = px.upstream
                conn.request(self.command, path, headers=hdrs)
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                out_headers = {k: v for k, v in resp.getheaders()
                               if k.lower() not in ("content-length", "connection",
                                                    "transfer-encoding")}
                if fault and fault.action == "corrupt" and body:
                    mid = len(body) // 2
                    body = body[:mid] + bytes([body[mid] ^ 0x01]) + body[mid + 1:]
                if fault and fault.action == "truncate":
                    self.send_response(resp.status)
                    for k, v in out_headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._send(resp.status, out_headers, body, head=self.command == "HEAD")

            def _send(self, status: int, headers: dict[str, str], body: bytes,
                      head: bool = False, chunked: bool = False) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if chunked:
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(body)
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        return H


@contextlib.contextmanager
def run_proxy(proxy: Proxy) -> Iterator[Proxy]:
    with serve(proxy.handler()) as port:
        proxy.port = port
        yield proxy
