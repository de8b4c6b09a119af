#!/usr/bin/env python3
"""Issue 15 item 4: memory per layer entry. A layer of 300,000 empty files (an OCI layout
written with ``tarfile``), peak RSS of whole-process ``imgscan pull``, ``imgscan scan`` of the
stored image and ``imgscan scan oci:…`` streamed, each in its own process (``wait4``'s
``ru_maxrss``: the biggest process of the tree), against the floor of the same interpreter
importing the CLI (``python -c "import imgscan.cli"``).

With ``--before DIR`` (a ``src`` directory of another tree, e.g. the branch point exported
with ``git archive BASE src rules | tar -x -C /tmp/before``: ``src/imgscan/_rules`` links to
``rules``) the same commands of that tree run in the same
interleaved rounds, so before and after are measured under the same load; ``--realistic``
adds the 40,000-file generated image of bench_stream.py (streamed and stored scans, wall
time), to show the compact index costs no speed.

    python3 bench/bench_entries.py [--runs 3] [--entries 300000] [--before DIR]
                                   [--realistic] [--write]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common
from common import Contender, run_timed

TARGET_MB = 100


def entries_layout(n: int) -> str:
    """An OCI layout of one gzip layer of ``n`` empty files (1,000 per directory), built
    once per ``n``."""
    layout = os.path.join(common.WORK, f"entries-{n}-oci")
    if os.path.exists(os.path.join(layout, "index.json")):
        return layout
    # in a child: Linux carries a parent's peak RSS into the ru_maxrss of children forked
    # after it, so the benchmark's own process must never hold the 150 MB tar
    subprocess.run([sys.executable, __file__, "--build-only", "--entries", str(n)],
                   check=True)
    return layout


def _build(layout: str, n: int) -> None:
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for d in range((n + 999) // 1000):
            ti = tarfile.TarInfo(f"data/d{d:04d}")
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(ti)
            for i in range(d * 1000, min(n, d * 1000 + 1000)):
                ti = tarfile.TarInfo(f"data/d{d:04d}/file-{i:07d}.txt")
                ti.mode, ti.mtime = 0o644, 1_700_000_000
                tf.addfile(ti)
    tar = raw.getvalue()
    blob = gzip.compress(tar, compresslevel=6, mtime=0)
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "created": "2024-01-01T00:00:00Z", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                         "history": [{"created_by": f"{n} empty files"}]}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _put(blobs, config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": _put(blobs, blob), "size": len(blob)}]}).encode()
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "digest": _put(blobs, manifest), "size": len(manifest),
                            "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(layout, "index.json") + ".tmp", "w") as f:
        json.dump(index, f)
    os.replace(os.path.join(layout, "index.json") + ".tmp", os.path.join(layout, "index.json"))


def _put(blobs: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest


def _env(src: str) -> dict[str, str]:
    env = common.imgscan_env()
    env["PYTHONPATH"] = src
    env["PYTHONPYCACHEPREFIX"] = os.path.join(common.WORK, "pycache-" +
                                              hashlib.sha256(src.encode()).hexdigest()[:8])
    env["IMGSCAN_CACHE_DIR"] = os.path.join(common.WORK, "entries-usercache")
    return env


def contenders(tree: str, src: str, py: str, layout: str, work: str,
               commands: tuple[str, ...]) -> list[Contender]:
    """The per-entry memory contenders of one tree (``src``) under one interpreter."""
    env = _env(src)
    ref = f"oci:{layout}:v1"
    venv = os.path.basename(os.path.dirname(os.path.dirname(py)))
    base = os.path.join(work, f"{tree}-{venv}")
    pulled, fresh = base + "-stored", base + "-fresh"
    sink = os.path.join(work, "report.json")

    def cmd(*args: str) -> list[str]:
        return [py, "-m", "imgscan", *args]

    name = ""
    if "scan" in commands:  # the stored image the stored scan reads
        common.rmtree(pulled)
        subprocess.run(cmd("pull", ref, "--root", pulled), env=env, check=True,
                       capture_output=True)
        listing = subprocess.run(cmd("images", "--format", "json", "--root", pulled), env=env,
                                 check=True, capture_output=True, text=True).stdout
        name = json.loads(listing)[0]["id"]

    def clear_cache() -> None:  # every stored scan analyzes afresh (no per-layer results)
        common.rmtree(os.path.join(pulled, "cache"))

    out = {
        "pull": Contender(f"{tree}: pull", lambda: run_timed(
            cmd("pull", ref, "--root", fresh), env=env), lambda: common.rmtree(fresh)),
        "scan": Contender(f"{tree}: scan (stored)", lambda: run_timed(
            cmd("scan", name, "--root", pulled, "--format", "json", "-o", sink,
                "--fail-on", "none"), env=env), clear_cache),
        "stream": Contender(f"{tree}: scan oci: (streamed)", lambda: run_timed(
            cmd("scan", ref, "--root", fresh, "--format", "json", "-o", sink, "--fail-on",
                "none"), env=env), lambda: common.rmtree(fresh)),
        "import": Contender(f"{tree}: python -c 'import imgscan.cli'", lambda: run_timed(
            [py, "-c", "import imgscan.cli"], env=env)),
    }
    return [out[c] for c in commands]


def _row(c: Contender) -> list[object]:
    return [c.name, f"{c.peak_rss_mb:.0f}", f"{c.median:.2f}", len(c.samples)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--entries", type=int, default=300_000)
    ap.add_argument("--before", metavar="SRC", help="another tree's src directory")
    ap.add_argument("--realistic", action="store_true",
                    help="also the 40,000-file image of bench_stream.py (wall time)")
    ap.add_argument("--interpreters", choices=["both", "session"], default="both",
                    help="session: this interpreter only (the clean venv's figures are "
                    "the same within 2 MB; its start-up is ~25 ms shorter)")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build_only:
        _build(os.path.join(common.WORK, f"entries-{args.entries}-oci"), args.entries)
        return 0
    layout = entries_layout(args.entries)
    work = os.path.join(common.WORK, "entries-runs")
    common.rmtree(work)
    os.makedirs(work)
    trees = [("after", common.SRC)] + ([("before", args.before)] if args.before else [])
    pythons = [("session python", sys.executable)]
    if args.interpreters == "both":
        pythons.append(("clean venv", common.clean_python()))
    every: list[Contender] = []
    for tree, src in trees:
        for label, py in pythons:
            cs = contenders(tree, src, py, layout, work,
                            ("pull", "scan", "stream", "import"))
            for c in cs:
                c.name = f"{c.name} [{label}]"
            every += cs
    common.interleave(every, args.runs, warmup=0, label="entries ")
    table = common.md_table(["command (tree) [interpreter]", "peak RSS MB", "median s",
                             "runs"], [_row(c) for c in every])
    after = [c for c in every if c.name.startswith("after:") and "import" not in c.name]
    worst = max(c.peak_rss_mb for c in after)
    floor = max(c.peak_rss_mb for c in every if c.name.startswith("after:")
                and "import" in c.name)
    verdict = (f"**{'met' if worst < TARGET_MB else 'missed'}**: the worst of the three "
               f"commands peaks at {worst:.0f} MB for {args.entries:,} entries (target "
               f"< {TARGET_MB} MB; importing the CLI alone is {floor:.0f} MB). Peak RSS does "
               "not depend on load, so the verdict uses the worst figure of either "
               "interpreter; wall times are for the record (the session interpreter pays "
               "~25 ms of a sandbox .pth hook per process).")
    real = ""
    if args.realistic:
        real = realistic(trees, args.runs, work)
    body = (f"### {args.entries:,} empty files in one layer\n\n{table}\n\n{verdict}\n"
            f"{real}")
    print(body)
    if args.write:
        before = (" --before SRC" if args.before else "") + (
            " --interpreters session" if args.interpreters == "session" else "")
        cmd = (f"python3 bench/bench_entries.py --runs {args.runs} --entries {args.entries}"
               f"{before}{' --realistic' if args.realistic else ''} --write")
        common.write_section("entries", f"""## Memory per entry (issue 15 item 4)

Peak RSS (`wait4` ru_maxrss, the biggest process of the tree) of `imgscan pull
oci:LAYOUT:v1`, `imgscan scan NAME` (stored, per-layer cache cleared each run) and `imgscan
scan oci:LAYOUT:v1` (streamed, fresh store) of a generated layer of empty files, each command
its own process, interleaved rounds; "before" is the tree given with `--before` (the
branch point before the compact entry index: `git archive BASE src rules | tar -x -C
/tmp/before`; `rules` too: `src/imgscan/_rules` links to it, and without it no secret rule
runs).

Reproduce: `{cmd}`

Machine: {common.machine_line()}

{body}""")
    return 0


def realistic(trees: list[tuple[str, str]], runs: int, work: str) -> str:
    """Streamed and stored scans of bench_stream.py's 40,000-file image, per tree."""
    from bench_stream import generated_image

    layout, summary = generated_image()
    every = []
    for tree, src in trees:
        cs = contenders(tree, src, sys.executable, layout, work, ("scan", "stream"))
        for c in cs:
            c.name = c.name.replace(": scan", ": 40k files: scan")
        every += cs
    common.interleave(every, runs, warmup=1, label="40k ")
    table = common.md_table(["command (tree)", "peak RSS MB", "median s", "runs"],
                            [_row(c) for c in every])
    lines = [f"\n### Realistic: {len(summary['layers'])} layers, 40,000 files, "
             f"{common.fmt_mb(summary['total_tar'])} uncompressed\n\n{table}\n"]
    if len(trees) > 1:
        n = len(every) // 2
        for a, b in zip(every[:n], every[n:], strict=True):
            ratio = a.median / b.median
            lines.append(f"- {a.name.split(': ', 1)[1]}: after/before {ratio:.2f}x wall, "
                         f"{'no slower (met)' if ratio <= 1.05 else 'SLOWER (missed)'}; "
                         f"peak RSS {a.peak_rss_mb:.0f} MB vs {b.peak_rss_mb:.0f} MB")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
