"""Real parts for the server tests: ``redis-server`` on loopback, ``imgscan worker`` and
``imgscan serve`` processes, a registry of images that share base layers, a delaying proxy,
and a validator of responses against Harbor's OpenAPI document (tests/data/harbor/).

Every process is started here and stopped by its PID (a worker by its own process group:
its pool children die with it). Imported by the server tests (no conftest: the lead owns it).
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import redis
import yaml

import imagebuild as ib
import registry_fixtures as rf

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
SPEC_PATH = os.path.join(os.path.dirname(__file__), "data", "harbor",
                         "scanner-adapter-openapi-v1.2.yaml")


# -- redis ---------------------------------------------------------------------------------------
@dataclass
class RedisServer:
    port: int
    workdir: str
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        log = open(os.path.join(self.workdir, f"redis-{self.port}.log"), "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--bind", "127.0.0.1", "--dir", self.workdir],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        rf.wait_port(self.port, self.proc, None)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


@contextlib.contextmanager
def run_redis(workdir: str) -> Iterator[RedisServer]:
    srv = RedisServer(rf.free_port(), workdir)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


# -- imgscan processes -----------------------------------------------------------------------
def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": SRC, "IMGSCAN_QUIET": "1", **(extra or {})}
    env.pop("IMGSCAN_DEBUG", None)
    return env


@dataclass
class Proc:
    proc: subprocess.Popen
    log_path: str

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the process group (the worker and its pool children), then reap."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def start_imgscan(args: list[str], workdir: str, name: str,
                  env: dict[str, str] | None = None) -> Proc:
    log_path = os.path.join(workdir, f"{name}.log")
    with open(log_path, "wb") as log:
        p = subprocess.Popen([sys.executable, "-m", "imgscan", *args], stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=_env(env), start_new_session=True)
    return Proc(p, log_path)


@contextlib.contextmanager
def run_workers(queue_url: str, workdir: str, n: int = 2, time_limit: int = 60,
                env: dict[str, str] | None = None,
                extra: list[str] | None = None) -> Iterator[list[Proc]]:
    procs = [start_worker(queue_url, workdir, f"worker{i}", time_limit, env, extra)
             for i in range(n)]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill(signal.SIGTERM)


def start_worker(queue_url: str, workdir: str, name: str, time_limit: int = 60,
                 env: dict[str, str] | None = None, extra: list[str] | None = None) -> Proc:
    root = os.path.join(workdir, f"{name}-store")
    return start_imgscan(["worker", "--queue", queue_url, "--root", root, "--concurrency", "1",
                          "--time-limit", str(time_limit), "--loglevel", "info",
                          *(extra or [])], workdir, name, env)


@contextlib.contextmanager
def run_serve(queue_url: str, workdir: str, key_file: str | None = None,
              extra: list[str] | None = None) -> Iterator[str]:
    port = rf.free_port()
    args = ["serve", "--listen", f"127.0.0.1:{port}", "--queue", queue_url,
            "--refresh-after", "1"]
    if key_file:
        args += ["--api-key-file", key_file]
    args += extra or []
    p = start_imgscan(args, workdir, f"serve-{port}")
    try:
        rf.wait_port(port, p.proc, p.log_path)
        yield f"http://127.0.0.1:{port}"
    finally:
        p.kill(signal.SIGTERM)


# -- images ----------------------------------------------------------------------------------------
OS_RELEASE = 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n'
DPKG = "".join(
    f"Package: {n}\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\n"
    f"Version: {v}\nDescription: {n}\n\n"
    for n, v in [("libc6", "2.36-9"), ("bash", "5.2.15-2"), ("openssl", "3.0.11-1")])
AWS_KEY = "AKIA" + "Q7ZP3XKM2RW5TJ6B"


def base_layers() -> list[ib.Layer]:
    """Two base layers every image shares (an OS with packages, then tools)."""
    rnd = random.Random(3)
    return [
        ib.Layer(ib.layer_tar([ib.D("etc"), ib.F("etc/os-release", OS_RELEASE),
                               ib.D("var/lib/dpkg"), ib.F("var/lib/dpkg/status", DPKG)]),
                 created_by="ADD rootfs.tar /"),
        ib.Layer(ib.layer_tar([ib.D("usr/bin"),
                               ib.F("usr/bin/helper", bytes(rnd.getrandbits(8)
                                                            for _ in range(4096)), mode=0o4755),
                               ib.F("usr/share/doc/readme", "docs\n" * 200)]),
                 created_by="RUN install tools"),
    ]


def app_image(i: int, base: list[ib.Layer], size: int = 0) -> ib.ImageSpec:
    files = [ib.D("app"), ib.F(f"app/main{i}.py", f"print({i})\n")]
    if i % 4 == 0:
        files.append(ib.F("app/settings.py", f'AWS_ACCESS_KEY_ID = "{AWS_KEY}"\n'))
    if size:
        files.append(ib.F("app/blob.bin", bytes(random.Random(i).getrandbits(8)
                                                for _ in range(size))))
    return ib.ImageSpec([*base, ib.Layer(ib.layer_tar(files), created_by=f"COPY app{i}")],
                        config={"User": "1000", "Env": [f"APP={i}"]},
                        created=f"2024-01-{1 + i % 28:02d}T00:00:00Z")


@dataclass
class Fleet:
    """A registry holding ``n`` images under ``team/`` that share two base layers, an alias
    tag per image (same digest), and one image outside the prefix."""

    reg: rf.Registry
    n: int
    digests: dict[str, str] = field(default_factory=dict)  # repo:tag -> manifest digest
    diff_ids: set[str] = field(default_factory=set)

    @property
    def host(self) -> str:
        return self.reg.host

    @property
    def team_digests(self) -> set[str]:
        return {d for name, d in self.digests.items() if name.startswith("team/")}


def build_fleet(reg: rf.Registry, workdir: str, n: int = 20) -> Fleet:
    base = base_layers()
    fleet = Fleet(reg, n)
    specs = [(f"team/app{i:02d}", app_image(i, base)) for i in range(n)]
    specs.append(("other/tool", app_image(99, base)))
    for repo, spec in specs:
        layout = os.path.join(workdir, "layouts", repo.replace("/", "_"))
        os.makedirs(layout, exist_ok=True)
        index = ib.write_oci_layout(layout, [spec])
        digest = index["manifests"][0]["digest"]
        rf.skopeo_push(layout, f"{reg.host}/{repo}:1.0")
        fleet.digests[f"{repo}:1.0"] = digest
        fleet.diff_ids.update(lay.diff_id for lay in spec.layers)
        if repo.endswith(("00", "01")):
            rf.skopeo_push(layout, f"{reg.host}/{repo}:latest")
            fleet.digests[f"{repo}:latest"] = digest
    return fleet


def push_image(reg: rf.Registry, workdir: str, repo: str, spec: ib.ImageSpec) -> str:
    layout = os.path.join(workdir, "layouts", repo.replace("/", "_"))
    os.makedirs(layout, exist_ok=True)
    index = ib.write_oci_layout(layout, [spec])
    rf.skopeo_push(layout, f"{reg.host}/{repo}:1.0")
    return str(index["manifests"][0]["digest"])


# -- a proxy that slows blob downloads (to catch a worker mid-job) ---------------------------------
@dataclass
class SlowProxy:
    upstream: str
    delay: float
    port: int = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        px = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._forward()

            def do_HEAD(self) -> None:
                self._forward()

            def _forward(self) -> None:
                if "/blobs/" in self.path and self.command == "GET":
                    time.sleep(px.delay)
                conn = http.client.HTTPConnection(px.upstream, timeout=30)
                hdrs = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, headers={**hdrs, "Host": px.upstream})
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        return H


@contextlib.contextmanager
def run_slow_proxy(upstream: str, delay: float) -> Iterator[SlowProxy]:
    px = SlowProxy(upstream, delay)
    with rf.serve(px.handler()) as port:
        px.port = port
        yield px


# -- Harbor's OpenAPI document -------------------------------------------------------------------
class HarborSpec:
    """Checks a response against ``scanner-adapter-openapi-v1.2.yaml``: the status is one the
    operation declares, the Content-Type one of that status' media types, and the body valid
    against its schema (OpenAPI 3.0 schemas checked as JSON Schema over the components)."""

    def __init__(self, path: str = SPEC_PATH) -> None:
        with open(path) as f:
            self.doc = yaml.safe_load(f)

    def check(self, method: str, path: str, status: int, content_type: str | None,
              body: bytes) -> Any:
        op = self.doc["paths"][path][method.lower()]
        responses = {str(k): v for k, v in op["responses"].items()}
        assert str(status) in responses, f"{method} {path}: {status} is not in the spec"
        content = responses[str(status)].get("content")
        if not content:
            return None
        norm = {_norm(k): v for k, v in content.items()}
        ctype = _norm(content_type or "")
        assert ctype in norm, f"{method} {path} {status}: {content_type!r} not in {list(norm)}"
        schema = norm[ctype]["schema"]
        if schema.get("type") == "string":
            return body.decode()
        doc = json.loads(body)
        jsonschema.Draft7Validator({**schema, "components": self.doc["components"]}
                                   ).validate(doc)
        return doc


def _norm(mime: str) -> str:
    parts = [p.strip() for p in mime.split(";") if p.strip()]
    return "; ".join([parts[0].lower(), *[p.replace(" ", "") for p in parts[1:]]]) if parts \
        else ""


def wait_for(pred: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def in_thread(fn: Any, *args: Any, **kw: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``fn`` in a thread; its result or exception lands in the returned dict."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn(*args, **kw)
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out
