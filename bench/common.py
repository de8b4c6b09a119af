"""Shared machinery for the benchmark scripts: timing whole processes, interleaving
contenders, medians, machine facts, building test images, and writing BENCHMARKS.md.

Why whole processes: users run ``imgscan`` as a CLI, so interpreter start-up, imports and
exit are part of what they wait for. Why interleaving: the benchmark machines are noisy
(2 cores, other work in parallel); running contender A five times and then B five times
would let a burst of background load land on one of them only. Each round runs every
contender once, in a rotating order, and we compare medians of the same run.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
WORK = os.path.join(BENCH_DIR, ".work")
SRC = os.path.join(REPO, "src")
BENCHMARKS_MD = os.path.join(REPO, "BENCHMARKS.md")
PEERS = os.environ.get("IMGSCAN_BENCH_PEERS", "/tmp/peers")


def imgscan_cmd(*args: str) -> list[str]:
    """The imgscan CLI of *this* tree (not whatever is installed), as a whole process."""
    return [sys.executable, "-m", "imgscan", *args]


def imgscan_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # An installed imgscan has byte-compiled modules; a session that sets
    # PYTHONDONTWRITEBYTECODE would make every run recompile the sources (~50 ms of a mount).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(WORK, "pycache")
    return env


def clean_python() -> str:
    """An interpreter as a user's own venv install of imgscan sees it: a venv (no system
    site packages) whose one ``.pth`` puts this tree's ``src`` and the base interpreter's
    site-packages on ``sys.path`` as plain paths, so the base's ``.pth`` hooks do not run.

    Why: this machine's interpreter runs ``_sandboxing_egress_ca.pth`` (written by the
    sandbox, not by any package we depend on) at every start-up; it imports certifi and
    costs ~25 ms per process, more than half of ``python3 -c pass``. A user's venv has no
    such hook. Benchmarks report both interpreters so the difference stays visible.
    """
    venv = os.path.join(WORK, "cleanvenv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        base_py = os.path.join(sys.base_prefix, "bin", "python3")
        subprocess.run([base_py if os.path.exists(base_py) else sys.executable, "-m", "venv",
                        "--without-pip", venv], check=True)
    base_lib = sysconfig.get_paths(vars={"base": sys.base_prefix,
                                         "platbase": sys.base_prefix})["purelib"]
    out = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    with open(os.path.join(out, "_imgscan_bench_paths.pth"), "w", encoding="utf-8") as f:
        f.write(f"{SRC}\n{base_lib}\n")
    return py


def clean_imgscan() -> str:
    """The ``imgscan`` console script in ``clean_python()``'s venv, as pip writes it for a
    user's install (``[project.scripts]``: ``imgscan.cli_fast:main``). Users run this, not
    ``python -m imgscan``, which also imports ``runpy`` and ``importlib.util``."""
    py = clean_python()
    script = os.path.join(os.path.dirname(py), "imgscan")
    with open(script, "w", encoding="utf-8") as f:
        f.write(f"#!{py}\n# -*- coding: utf-8 -*-\nimport re\nimport sys\n"
                "from imgscan.cli_fast import main\nif __name__ == '__main__':\n"
                "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
                "    sys.exit(main())\n")
    os.chmod(script, 0o755)
    return script


# -- measuring --------------------------------------------------------------------------------


@dataclass
class Sample:
    wall: float  # seconds
    maxrss_kb: int  # peak RSS of the largest single process in the tree (wait4 rusage)
    rc: int


def run_timed(cmd: Sequence[str] | str, *, env: dict[str, str] | None = None,
              cwd: str | None = None, check: bool = True, stdout: int | None = None,
              ) -> Sample:
    """Run ``cmd`` (a list, or a string for ``bash -c``) and time it from fork to reap.

    ``os.wait4`` gives the child's rusage, whose ``ru_maxrss`` on Linux is the maximum of the
    child and every descendant it reaped: the peak of the biggest process in the tree.
    """
    argv = ["bash", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=stdout if stdout is not None else subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    if check and proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {_show(argv)}\n"
                           f"{err.decode(errors='replace')[-3000:]}")
    return Sample(wall, int(ru.ru_maxrss), proc.returncode)


def _show(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


@dataclass
class Contender:
    name: str
    run: Callable[[], Sample]
    setup: Callable[[], None] | None = None  # untimed, before every run
    teardown: Callable[[], None] | None = None  # untimed, after every run
    samples: list[Sample] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def peak_rss_mb(self) -> float:
        return max(s.maxrss_kb for s in self.samples) / 1024

    @property
    def spread(self) -> tuple[float, float]:
        walls = [s.wall for s in self.samples]
        return min(walls), max(walls)


def interleave(contenders: list[Contender], runs: int, *, warmup: int = 1,
               between: Callable[[], None] | None = None, label: str = "") -> None:
    """Run every contender ``warmup`` + ``runs`` times, one of each per round, rotating the
    order each round so that no contender always runs first (or just after a heavy one)."""
    n = len(contenders)
    for rnd in range(warmup + runs):
        order = contenders[rnd % n:] + contenders[:rnd % n]
        for c in order:
            if c.setup:
                c.setup()
            if between:
                between()
            s = c.run()
            if c.teardown:
                c.teardown()
            if rnd >= warmup:
                c.samples.append(s)
            tag = "warmup" if rnd < warmup else f"run {rnd - warmup + 1}/{runs}"
            print(f"  {label}{tag:>10}  {c.name:<40} {s.wall:8.3f}s  "
                  f"{s.maxrss_kb / 1024:7.1f} MB", file=sys.stderr, flush=True)


def rmtree(path: str) -> None:
    """``rm -rf``: several times faster than ``shutil.rmtree`` on a gigabyte of small files,
    which matters only because it runs between every two timed runs."""
    subprocess.run(["rm", "-rf", "--one-file-system", path], check=False)


def sync_and_settle() -> None:
    """Flush dirty pages left by the previous run so its writeback is not billed to the next."""
    os.sync()


# -- reporting --------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "kernel": platform.release(),
        "cpu": cpu,
        "memory": mem,
        "python": platform.python_version(),
        "imgscan commit": rev,
    }


def machine_line() -> str:
    m = machine_info()
    return (f"{m['date']}; nproc {m['nproc']}, kernel {m['kernel']}, {m['cpu']}, "
            f"{m['memory']} RAM, Python {m['python']}, imgscan at `{m['imgscan commit']}`")


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = ["| " + " | ".join(h.replace("|", "\\|") for h in headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(x).replace("|", "\\|") for x in r) + " |")
    return "\n".join(out)


def contender_table(contenders: list[Contender], baseline: str) -> str:
    base = next(c for c in contenders if c.name == baseline).median
    rows = []
    for c in contenders:
        lo, hi = c.spread
        rows.append([c.name, f"{c.median:.3f}", f"{lo:.3f} to {hi:.3f}",
                     f"{c.median / base:.2f}x", f"{c.peak_rss_mb:.0f}", len(c.samples)])
    return md_table(["contender", "median s", "min to max s", f"ratio to {baseline}",
                     "peak RSS MB", "runs"], rows)


_HEADER = """# Benchmarks

Measured numbers for imgscan against its peers, produced by the scripts under `bench/`
(see `bench/README.md`). Every figure is a median of interleaved whole-process runs on one
machine in one session; compare ratios within a section, not absolute seconds across
sections (the machines are shared and noisy). Each section names the command that
reproduces it.
"""


def write_section(key: str, body: str) -> None:
    """Replace (or append) the section between this benchmark's markers in BENCHMARKS.md."""
    start, end = f"<!-- bench:{key}:start -->", f"<!-- bench:{key}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    text = _HEADER
    if os.path.exists(BENCHMARKS_MD):
        with open(BENCHMARKS_MD) as f:
            text = f.read()
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block
    with open(BENCHMARKS_MD + ".tmp", "w") as f:
        f.write(text)
    os.replace(BENCHMARKS_MD + ".tmp", BENCHMARKS_MD)
    print(f"wrote section '{key}' of {BENCHMARKS_MD}", file=sys.stderr)


def write_summary_row(prefix: str, row: str) -> None:
    """Replace the row of BENCHMARKS.md's summary table that starts with ``prefix`` (or add
    it at the table's end), so that ``--write`` keeps the summary and the section agreeing."""
    with open(BENCHMARKS_MD) as f:
        lines = f.read().split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("## Summary"))
    end = next(i for i in range(start + 1, len(lines))
               if lines[i].startswith("|") and not lines[i + 1].startswith("|"))
    at = next((i for i in range(start, end + 1) if lines[i].startswith(prefix)), None)
    if at is None:
        lines.insert(end + 1, row)
    else:
        lines[at] = row
    with open(BENCHMARKS_MD + ".tmp", "w") as f:
        f.write("\n".join(lines))
    os.replace(BENCHMARKS_MD + ".tmp", BENCHMARKS_MD)


# -- building images --------------------------------------------------------------------------


def _sha256_file(path: str) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return "sha256:" + h.hexdigest(), n


@dataclass
class LayerSpec:
    """One layer: ``paths`` (relative to ``root``) tarred with GNU tar, minus ``exclude``."""

    root: str
    paths: list[str]
    exclude: list[str] = field(default_factory=list)
    created_by: str = ""


def _build_layer(spec: LayerSpec, tmpdir: str, i: int,
                 level: int) -> tuple[str, str, int, int, str]:
    tar_path = os.path.join(tmpdir, f"layer{i}.tar")
    cmd = ["tar", "--sort=name", "--numeric-owner", "--xattrs", "--format=pax",
           "--pax-option=delete=atime,delete=ctime", "-C", spec.root, "-cf", tar_path]
    for ex in spec.exclude:
        cmd.append(f"--exclude=./{ex}" if not ex.startswith("./") else f"--exclude={ex}")
    cmd += [p if p.startswith("./") else "./" + p for p in spec.paths]
    subprocess.run(cmd, check=True, capture_output=True)
    diff_id, tar_size = _sha256_file(tar_path)
    subprocess.run(["gzip", "-n", f"-{level}", tar_path], check=True)
    gz = tar_path + ".gz"
    digest, gz_size = _sha256_file(gz)
    return gz, diff_id, tar_size, gz_size, digest


def build_oci_layout(layout: str, tag: str, layers: list[LayerSpec], *, level: int = 6,
                     extra_config: dict | None = None) -> dict:
    """Write an OCI image layout with gzip layers built from real directories.

    Layers are compressed in parallel (one gzip per core). Returns a summary dict
    (layer sizes, total uncompressed/compressed) that is also saved as ``layout/.summary``
    so that a second call with the same layout skips the build.
    """
    summary_path = os.path.join(layout, ".summary.json")
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            return json.load(f)
    if os.path.exists(layout):
        shutil.rmtree(layout)
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs)
    tmpdir = layout + ".tmp"
    shutil.rmtree(tmpdir, ignore_errors=True)
    os.makedirs(tmpdir)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        built = list(pool.map(lambda t: _build_layer(t[1], tmpdir, t[0], level),
                              enumerate(layers)))
    descs, diff_ids, history = [], [], []
    for spec, (gz, diff_id, _tar, gz_size, digest) in zip(layers, built, strict=True):
        os.rename(gz, os.path.join(blobs, digest.split(":", 1)[1]))
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      "digest": digest, "size": gz_size})
        diff_ids.append(diff_id)
        history.append({"created": "2024-01-01T00:00:00Z",
                        "created_by": spec.created_by or f"tar {' '.join(spec.paths)}"})
    shutil.rmtree(tmpdir)
    config = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
              "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                                 "/sbin:/bin"], "Cmd": ["/bin/sh"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history}
    if extra_config:
        config.update(extra_config)
    cfg = json.dumps(config, sort_keys=True).encode()
    cfg_digest = _put_blob(blobs, cfg)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": cfg_digest, "size": len(cfg)},
                "layers": descs}
    man = json.dumps(manifest, sort_keys=True).encode()
    man_digest = _put_blob(blobs, man)
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "digest": man_digest, "size": len(man),
                            "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    summary = {
        "tag": tag,
        "layers": [{"blob": os.path.join(blobs, d["digest"].split(":", 1)[1]),
                    "digest": d["digest"], "diff_id": b[1], "tar_size": b[2], "gz_size": b[3],
                    "paths": s.paths}
                   for d, b, s in zip(descs, built, layers, strict=True)],
        "total_tar": sum(b[2] for b in built),
        "total_gz": sum(b[3] for b in built),
        "manifest_digest": man_digest,
    }
    with open(summary_path, "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def _put_blob(blobs: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest.split(":", 1)[1]), "wb") as f:
        f.write(data)
    return digest


def docker_archive(layout: str, tag: str, dest: str, name: str) -> str:
    """The same image as a ``docker save`` archive (via skopeo), built once."""
    if not os.path.exists(dest):
        subprocess.run(["skopeo", "copy", "-q", f"oci:{layout}:{tag}",
                        f"docker-archive:{dest}:{name}"], check=True, capture_output=True)
    return dest


# The multi-layer "real material" image shared by the pull, mount and registry benchmarks:
# this machine's own binaries, Python libraries, documentation and locales.
SYSTEM_LAYERS = [
    LayerSpec("/", ["usr/bin"], created_by="COPY /usr/bin"),
    LayerSpec("/", ["usr/lib/python3", "usr/lib/python3.11"], created_by="COPY python"),
    LayerSpec("/", ["usr/share/doc", "usr/share/man"], created_by="COPY doc and man"),
    LayerSpec("/", ["usr/share/locale"], created_by="COPY /usr/share/locale"),
    LayerSpec("/", ["usr/lib/gcc", "usr/share/perl"], created_by="COPY gcc and perl"),
]


def system_image() -> tuple[str, str, dict]:
    """(layout dir, tag, summary) of the multi-layer system image, built on first use."""
    layout = os.path.join(WORK, "system-oci")
    summary = build_oci_layout(layout, "v1", SYSTEM_LAYERS)
    return layout, "v1", summary


def fmt_mb(n: int | float) -> str:
    return f"{n / 1e6:.0f} MB"
