"""docker-daemon: with a real dockerd on a private socket and data root; the same image in
podman's store and as a docker-archive gives the same scan. Bad sockets through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
from click.testing import CliRunner

import cstorage_fixtures as cf
from imgscan import api
from imgscan.cli import main
from imgscan.images.docker_daemon import Engine
from imgscan.mount.overlay import mounted_paths, unmount
from imgscan.scanner import Scanner
from imgscan.store.store import Store

pytestmark = pytest.mark.skipif(shutil.which("dockerd") is None or os.geteuid() != 0,
                                reason="needs dockerd and root")


@pytest.fixture(scope="session")
def dockerd():  # type: ignore[no-untyped-def]
    """A private dockerd: its own socket, data and exec roots; stopped by PID."""
    base = tempfile.mkdtemp(prefix="dk", dir="/tmp")
    data, exe = os.path.join(base, "data"), os.path.join(base, "exec")
    sock, pidf = os.path.join(base, "d.sock"), os.path.join(base, "d.pid")
    log = open(os.path.join(base, "log"), "wb")
    proc = subprocess.Popen(
        ["dockerd", "--iptables=false", "--bridge=none", "--storage-driver=overlay2",
         "--data-root", data, "--exec-root", exe, "-H", f"unix://{sock}", "--pidfile", pidf],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.skip("dockerd did not start: " + open(log.name).read()[-300:])
            if os.path.exists(sock):
                try:
                    Engine(sock).check()
                    break
                except Exception:
                    pass
            if time.monotonic() > deadline:
                pytest.skip("dockerd not ready within 60 s")
            time.sleep(0.2)
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        for p in sorted((p for p in mounted_paths() if p.startswith(base + "/")),
                        key=len, reverse=True):
            unmount(p, detach=True)
        shutil.rmtree(base, ignore_errors=True)


NAME = cf.NAME
_keyed = cf._keyed


@pytest.fixture
def podman_store(tmp_path):  # type: ignore[no-untyped-def]
    with cf.podman_store(tmp_path) as x:
        yield x


@pytest.fixture
def loaded(dockerd, podman_store, monkeypatch):  # type: ignore[no-untyped-def]
    """The test image in podman's store and in the daemon, and its docker-archive."""
    cs, podman, archive = podman_store
    eng = Engine(dockerd)
    with open(archive, "rb") as f:
        eng.load(f.read())
    eng.close()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{dockerd}")
    return cs, podman, archive


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run([sys.executable, "-m", "imgscan", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def test_images_source_docker_daemon(loaded, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = _cli("images", "--source", "docker-daemon", "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    row = next(x for x in rows if NAME in x["names"])
    assert row["layers"] == 2 and row["platform"] == "linux/amd64"
    assert set(row) == {"id", "names", "digest", "layers", "size", "created", "platform"}
    table = _cli("images", "--source", "docker-daemon").stdout
    assert table.split("\n")[0].split() == ["IMAGE", "ID", "NAMES", "PLATFORM", "LAYERS",
                                            "SIZE", "CREATED"]
    assert NAME in table


def test_same_results_three_ways(loaded, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """scan containers-storage:, docker-daemon: and docker-archive: agree: packages and
    findings with their ids, paths and layers."""
    cs, _, archive = loaded
    spec = f"[overlay@{cs.graph_root}+{cs.run_root}]"
    reports = [api.scan(ref, store=Store(str(tmp_path / str(i))))
               for i, ref in enumerate([f"containers-storage:{spec}{NAME}",
                                        f"docker-daemon:{NAME}",
                                        f"docker-archive:{archive}"])]
    assert _keyed(reports[0]) == _keyed(reports[1]) == _keyed(reports[2])
    assert any(f.location.path == "/usr/bin/su" for f in reports[0].findings)
    assert [lay.diff_id for lay in reports[0].layers] == \
        [lay.diff_id for lay in reports[1].layers] == [lay.diff_id for lay in reports[2].layers]
    # and through the CLI, as JSON
    outs = []
    for ref in (f"containers-storage:{spec}{NAME}", f"docker-daemon:{NAME}",
                f"docker-archive:{archive}"):
        r = _cli("--quiet", "scan", ref, "--format", "json", "--root", str(tmp_path / "cli"))
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        outs.append(([(f["id"], f["location"]["path"], f["location"].get("layer"))
                      for f in doc["findings"]],
                     [(p["name"], p["version"], p.get("layer")) for p in doc["packages"]]))
    assert outs[0] == outs[1] == outs[2]


def test_pull_from_daemon_and_from_containers_storage(loaded, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cs, _, _ = loaded
    spec = f"[overlay@{cs.graph_root}+{cs.run_root}]"
    root = str(tmp_path / "s")
    a = _cli("pull", f"docker-daemon:{NAME}", "--root", root)
    b = _cli("pull", f"containers-storage:{spec}{NAME}", "--root", root)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert a.stdout.strip() == b.stdout.strip()  # the same image id
    store = Store(root)
    (img,) = store.images()
    assert NAME in img.names
    # the pulled image scans like the others
    assert _keyed(Scanner().scan_image(store, img)) == _keyed(api.scan(
        f"containers-storage:{spec}{NAME}", store=Store(str(tmp_path / "x"))))
    r = _cli("inspect", f"docker-daemon:{NAME}")
    assert r.returncode == 0 and json.loads(r.stdout)["Architecture"] == "amd64"


def test_missing_image_in_daemon(loaded, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = _cli("scan", "docker-daemon:nosuch:1", "--root", str(tmp_path / "s"))
    assert r.returncode == 3 and len(r.stderr.strip().splitlines()) == 1
    assert "nosuch" in r.stderr
    assert not os.path.exists(tmp_path / "s" / "images") or \
        Store(str(tmp_path / "s")).images() == []


# -- sockets that are not a (working) Docker Engine --------------------------------------
_serve = cf.serve_unix


def _no_store_written(root: str) -> bool:
    return not os.path.isdir(os.path.join(root, "images")) or Store(root).images() == []


@pytest.mark.parametrize("kind", ["garbage", "plain-http", "cut-stream", "empty"])
def test_bad_sockets(kind, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sock = tempfile.mktemp(prefix="fake", suffix=".sock", dir="/tmp")

    def handler(conn: socket.socket, url: str) -> None:
        if kind == "garbage":
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        elif kind == "plain-http":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        elif url == "/_ping":
            conn.sendall(b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nConnection: close\r\n"
                         b"Content-Length: 2\r\n\r\nOK")
        elif url.endswith("/json"):  # inspect answers; the stream is what fails
            body = json.dumps({"Id": "sha256:" + "a" * 64,
                               "RootFS": {"Type": "layers", "Layers": []}}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
                         + body)
        elif kind == "empty":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        else:  # the daemon disappears mid-stream
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n"
                         b"10000\r\n" + b"\0" * 5000)

    t = _serve(sock, handler)
    try:
        root = str(tmp_path / "s")
        for args in (["scan", "docker-daemon:x:1", "--root", root],
                     ["pull", "docker-daemon:x:1", "--root", root],
                     ["images", "--source", "docker-daemon"]):
            if kind in ("cut-stream", "empty") and args[0] == "images":
                continue
            r = CliRunner().invoke(main, args, env={"DOCKER_HOST": f"unix://{sock}"})
            assert r.exit_code == 3, (kind, args, r.output)
            lines = r.output.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("imgscan: error: docker-daemon"), \
                lines
            want = {"garbage": "not a Docker Engine", "plain-http": "not a Docker Engine",
                    "cut-stream": "broke off", "empty": "empty image stream"}[kind]
            assert want in lines[0]
        assert _no_store_written(root)
    finally:
        t.srv.close()  # type: ignore[attr-defined]
        os.unlink(sock)


def test_no_socket(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = CliRunner().invoke(main, ["scan", "docker-daemon:x", "--root", str(tmp_path)],
                           env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert r.exit_code == 3 and "no such socket" in r.output
    r = CliRunner().invoke(main, ["scan", "docker-daemon:x", "--root", str(tmp_path)],
                           env={"DOCKER_HOST": "tcp://1.2.3.4:2375"})
    assert r.exit_code == 2 and "only unix://" in r.output


# -- the save stream analyzed as it arrives ------------------------------------------------
def _load(dockerd: str, tmp_path, spec, name: str) -> str:  # type: ignore[no-untyped-def]
    """Load ``spec`` as ``name`` into the daemon; its docker-archive (a repeated layer is a
    symlink to its first copy, as ``docker save`` writes it)."""
    path = str(tmp_path / f"{name.replace('/', '_').replace(':', '_')}.tar")
    with open(path, "wb") as f:
        f.write(cf.save_tar(cf.legacy_members(spec, [name])))
    eng = Engine(dockerd)
    with open(path, "rb") as f:
        eng.load(f.read())
    eng.close()
    return path


def _spec(extra: list | None = None):  # type: ignore[no-untyped-def]
    from imagebuild import ImageSpec, Layer

    l1, l2 = cf._layers()
    return ImageSpec([Layer(l1.tar, None, "base"), Layer(l2.tar, None, "app"),
                      Layer(l1.tar, None, "base again"), *(extra or [])])


def test_repeated_layer_equal_to_archive(dockerd, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Docker 20.10 sends a repeated layer once (a symlink), layers in lexical order of
    their v1 ids: the scan equals the docker-archive scan, layer table included."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{dockerd}")
    archive = _load(dockerd, tmp_path, _spec(), "example.com/rep:1")
    a = api.scan("docker-daemon:example.com/rep:1", store=Store(str(tmp_path / "a")))
    b = api.scan(f"docker-archive:{archive}", store=Store(str(tmp_path / "b")))
    assert _keyed(a) == _keyed(b) and a.findings
    assert [(x.index, x.diff_id, x.created_by, x.digest, x.size, x.entries)
            for x in a.layers] == [(x.index, x.diff_id, x.created_by, x.digest, x.size,
                                    x.entries) for x in b.layers]
    assert a.layers[0].diff_id == a.layers[2].diff_id


def test_cached_layers_are_not_walked(dockerd, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A layer whose results are cached is recognised before its bytes pass (the v1 id of
    Docker's legacy layout proves its position) and only verified, not analyzed."""
    import imgscan.analyzers.sequential as seq
    from imagebuild import D, F, Layer, layer_tar

    monkeypatch.setenv("DOCKER_HOST", f"unix://{dockerd}")
    _load(dockerd, tmp_path, _spec(), "example.com/base:1")
    top = Layer(layer_tar([D("srv"), F("srv/new.txt", "hello\n")]), None, "new")
    _load(dockerd, tmp_path, _spec([top]), "example.com/derived:1")
    walked: list[str] = []
    real = seq.analyze_layer

    def counting(layer, *a, **kw):  # type: ignore[no-untyped-def]
        walked.append(layer.ref.diff_id)
        return real(layer, *a, **kw)

    monkeypatch.setattr(seq, "analyze_layer", counting)
    root = str(tmp_path / "s")
    api.scan("docker-daemon:example.com/base:1", store=Store(root))
    assert len(walked) == 2  # two distinct layers, each walked once
    walked.clear()
    derived = api.scan("docker-daemon:example.com/derived:1", store=Store(root))
    assert walked == [top.diff_id]
    fresh = api.scan("docker-daemon:example.com/derived:1", store=Store(str(tmp_path / "f")))
    assert _keyed(derived) == _keyed(fresh)


def test_no_temp_file_of_image_size(dockerd, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """TMPDIR on a 1 MiB tmpfs, an image of 8 MiB: the scan writes nothing of the image to
    disk (the stream used to be spooled to an unlinked temp file: ENOSPC)."""
    from imagebuild import D, F, Layer, layer_tar

    big = Layer(layer_tar([D("data")] + [F(f"data/{i}.bin", os.urandom(2 << 20))
                                         for i in range(4)]), None, "data")
    _load(dockerd, tmp_path, _spec([big]), "example.com/big:1")
    tmp = tmp_path / "tmpfs"
    tmp.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tmp)], check=True)
    try:
        r = _cli("--quiet", "scan", "docker-daemon:example.com/big:1", "--format", "json",
                 "--root", str(tmp_path / "s"),
                 env={"DOCKER_HOST": f"unix://{dockerd}", "TMPDIR": str(tmp)})
        assert r.returncode == 0, r.stderr
        assert len(json.loads(r.stdout)["layers"]) == 4
        assert os.listdir(tmp) == []
    finally:
        subprocess.run(["umount", str(tmp)], check=True)


def _peak_rss_kb(*args: str, env: dict[str, str]) -> int:
    """Run ``imgscan ARGS`` and return its peak RSS (``wait4`` rusage, kB), from a small
    launcher: a child forked from this (big) test process would carry its RSS in
    ``ru_maxrss`` across ``exec``."""
    import sys

    launcher = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], "
                "stdout=subprocess.DEVNULL); _, st, ru = os.wait4(p.pid, 0); "
                "print(os.waitstatus_to_exitcode(st), ru.ru_maxrss)")
    r = subprocess.run([sys.executable, "-c", launcher, sys.executable, "-m", "imgscan",
                        *args], env={**os.environ, **env}, capture_output=True, text=True,
                       timeout=300)
    rc, kb = r.stdout.split()
    assert rc == "0", r.stderr
    return int(kb)


def test_memory_flat_with_layer_size(dockerd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A layer of 64 MiB more costs the scan far less than 64 MiB of memory: layers pass
    through, they are never held."""
    from imagebuild import D, F, Layer, layer_tar

    def image(name: str, files: int) -> None:
        data = Layer(layer_tar([D("data")] + [F(f"data/{i}.bin", os.urandom(4 << 20))
                                              for i in range(files)]), None, "data")
        _load(dockerd, tmp_path, _spec([data]), name)

    image("example.com/small:1", 1)
    image("example.com/large:1", 17)
    env = {"DOCKER_HOST": f"unix://{dockerd}"}
    small = _peak_rss_kb("--quiet", "scan", "docker-daemon:example.com/small:1", "--root",
                         str(tmp_path / "a"), env=env)
    large = _peak_rss_kb("--quiet", "scan", "docker-daemon:example.com/large:1", "--root",
                         str(tmp_path / "b"), env=env)
    assert large - small < 24 << 10, (small, large)


# -- the warm hit (report cached under the inspect answer) on the entry's fast path --------
@pytest.fixture(scope="module")
def warm_daemon(dockerd, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A small image in the daemon; the store and cache its warm scans use."""
    tmp = tmp_path_factory.mktemp("ddwarm")
    _load(dockerd, tmp, _spec(), "example.com/warm:1")
    return {"root": str(tmp / "store"), "tmp": tmp,
            "env": {"DOCKER_HOST": f"unix://{dockerd}", "IMGSCAN_CACHE_DIR": str(tmp / "cache"),
                    "COLUMNS": "120"}}


def _drop_kept_texts(root: str) -> int:
    kept = os.path.join(root, "cache", "reports")
    heads = [f for f in os.listdir(kept) if f.endswith(".json-head")]
    for f in heads:
        os.unlink(os.path.join(kept, f))
    return len(heads)


WARM_CASES = [
    ["--format", "json"],
    ["--format", "json", "-o", "r.json", "--fail-on", "high"],
    ["--format", "table", "--packages", "-w"],
    ["--format", "sarif", "--fail-on", "low", "--analyzers", "npm,secrets"],
]


@pytest.mark.parametrize("extra", WARM_CASES, ids=[" ".join(c) for c in WARM_CASES])
def test_a_warm_daemon_scan_on_the_fast_path_writes_what_click_writes(warm_daemon, tmp_path,
                                                                      extra):  # type: ignore[no-untyped-def]
    """The fast path's hit (light client, kept JSON text) against click's hit with the kept
    text removed (rendered by the writer): the same bytes, files and exit code."""
    from test_warm_path import _run

    argv = ["scan", "docker-daemon:example.com/warm:1", *extra, "--root", warm_daemon["root"]]
    _run("fast", argv, warm_daemon, tmp_path / "first")  # a miss when these options are new
    fast, fast_mods = _run("fast", argv, warm_daemon, tmp_path / "fast")
    if "json" in extra:
        assert "imgscan.reports.json_writer" not in fast_mods  # the kept text
        assert _drop_kept_texts(warm_daemon["root"])
    slow, slow_mods = _run("click", argv, warm_daemon, tmp_path / "click")
    assert "click" not in fast_mods and "click" in slow_mods
    assert "urllib3" not in fast_mods  # no /get: the two small GETs as plain HTTP/1.0
    assert fast == slow
    assert fast[1] or fast[3], fast  # something was written
    assert fast[0] in (0, 1), fast[2]


@pytest.mark.parametrize("case", ["missing image", "no socket", "not an Engine"])
def test_daemon_errors_are_the_same_on_the_fast_path(warm_daemon, tmp_path, case):  # type: ignore[no-untyped-def]
    from test_warm_path import _run

    sock = tempfile.mktemp(prefix="fake", suffix=".sock", dir="/tmp")
    name = "example.com/nosuch:1" if case == "missing image" else "example.com/warm:1"
    env = dict(warm_daemon["env"])
    if case != "missing image":
        env["DOCKER_HOST"] = f"unix://{sock}"
    t = _serve(sock, lambda conn, url: conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")) \
        if case == "not an Engine" else None
    try:
        argv = ["scan", f"docker-daemon:{name}", "--root", warm_daemon["root"]]
        fast, fast_mods = _run("fast", argv, {**warm_daemon, "env": env}, tmp_path / "fast")
        slow = _run("click", argv, {**warm_daemon, "env": env}, tmp_path / "click")[0]
    finally:
        if t is not None:
            t.srv.close()  # type: ignore[attr-defined]
            os.unlink(sock)
    assert "click" not in fast_mods
    assert fast == slow
    lines = fast[2].strip().splitlines()
    assert fast[0] == 3 and len(lines) == 1, fast
    assert lines[0].startswith("imgscan: error: docker-daemon")
    want = {"missing image": "nosuch", "no socket": "no such socket",
            "not an Engine": "not a Docker Engine"}[case]
    assert want in lines[0]


def test_a_warm_daemon_hit_imports_little(warm_daemon):  # type: ignore[no-untyped-def]
    """Bounded with ``python -X importtime``: no urllib3 (the stream's client) or http.client,
    no click,
    no writer, no analyzer plugin, no stream walker."""
    import sys

    from clihelp import SRC

    argv = ["scan", "docker-daemon:example.com/warm:1", "--root", warm_daemon["root"],
            "--format", "json", "-o", os.devnull, "--fail-on", "critical"]
    env = {**os.environ, **warm_daemon["env"], "PYTHONPATH": SRC}
    for _ in range(2):  # the first one may be a miss; the second keeps nothing new
        p = subprocess.run([sys.executable, "-X", "importtime", "-m", "imgscan", *argv],
                           capture_output=True, text=True, env=env, timeout=120)
        assert p.returncode == 0, p.stderr[-2000:]
    mods = {line.rsplit("|", 1)[1].strip() for line in p.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}
    assert "imgscan.daemonscan" in mods and "imgscan.scanner" in mods, p.stderr[-3000:]
    unwanted = {"urllib3", "http.client", "imgscan.images.enginepool", "click", "orjson",
                "jsonschema",
                "imgscan.reports.json_writer", "imgscan.reports.common", "tarfile",
                "concurrent.futures", "importlib.metadata", "imgscan.cli",
                "imgscan.images.docker_stream", "imgscan.images.registry",
                "imgscan.analyzers.sequential", "imgscan.analyzers.stream",
                "imgscan.analyzers.dispatch", "imgscan.secrets.engine", "imgscan.progress"}
    assert not mods & unwanted, sorted(mods & unwanted)
    plugins = [m for m in mods if m.startswith("imgscan.analyzers.") and m.split(".")[2] not in
               {"interface", "identity", "pluginset", "registry", "reportcache"}]
    assert not plugins, plugins


@pytest.mark.parametrize("raw,want", [
    (b"HTTP/1.0 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOKtrailing", b"OK"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n3;x=1\r\n\":1\r\n1\r\n}"
     b"\r\n0\r\n\r\n", b'{"a":1}'),
    (b"HTTP/1.1 404 Not Found\r\n\r\n{\"message\":\"no\"}", b'{"message":"no"}'),
    (b"", "no answer"), (b"SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP answer"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "ends after 3 of 10"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc", "bad chunk"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nabc", "inside a chunk"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "not an HTTP answer"),
])
def test_small_answers_are_parsed_or_refused(raw, want) -> None:  # type: ignore[no-untyped-def]
    """The light client's answers (``/_ping``, inspect): whole, chunked, or refused."""
    from imgscan.images.docker_daemon import _Answer, _BadAnswer

    if isinstance(want, bytes):
        assert _Answer(raw).data == want
    else:
        with pytest.raises(_BadAnswer, match=want):
            _Answer(raw)


def test_a_chunked_inspect_answer_reaches_the_stream(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An Engine that answers inspect chunked (HTTP/1.1 style) is read as well; the stream
    that then fails keeps its one-line error."""
    sock = tempfile.mktemp(prefix="fake", suffix=".sock", dir="/tmp")
    body = json.dumps({"Id": "sha256:" + "b" * 64, "RootFS": {"Layers": []}}).encode()

    def handler(conn: socket.socket, url: str) -> None:
        if url == "/_ping":
            conn.sendall(b"HTTP/1.0 200 OK\r\nApi-Version: 1.41\r\n\r\nOK")
        elif url.endswith("/json"):
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
        else:
            conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    t = _serve(sock, handler)
    try:
        r = CliRunner().invoke(main, ["scan", "docker-daemon:x:1", "--root", str(tmp_path)],
                               env={"DOCKER_HOST": f"unix://{sock}"})
    finally:
        t.srv.close()  # type: ignore[attr-defined]
        os.unlink(sock)
    assert r.exit_code == 3 and r.output.count("\n") == 1, r.output
    assert "HTTP 500" in r.output
