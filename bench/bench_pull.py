#!/usr/bin/env python3
"""Issue 2: ``imgscan pull`` of a multi-layer gzip OCI layout into a fresh store, against the
floor of what any importer must do: ``gzip -dc LAYER | tar -x`` for each layer.

The baseline does no digest verification, no per-layer index and no safety checks, so it is
a floor, not a peer; the target is imgscan within 1.3x of the sequential shell loop. A
parallel ``&``-per-layer variant is reported too, for honesty (imgscan uses threads).

    python3 bench/bench_pull.py [--runs 5] [--write] [--profile]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common
from common import Contender, imgscan_cmd, imgscan_env, run_timed

TARGET = 1.3


def shell_baseline(blobs: list[str], dest: str, parallel: bool) -> str:
    lines = ["set -e"]
    for i, b in enumerate(blobs):
        d = os.path.join(dest, str(i))
        step = f"mkdir -p {shlex.quote(d)}; gzip -dc {shlex.quote(b)} | tar -x -C {shlex.quote(d)}"
        lines.append(f"( {step} ) &" if parallel else step)
    if parallel:
        lines.append("wait")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    ap.add_argument("--profile", action="store_true",
                    help="also profile one imgscan pull (py-spy if available, and cProfile "
                         "with one worker) and print where the time goes")
    args = ap.parse_args()

    layout, tag, summary = common.system_image()
    blobs = [lay["blob"] for lay in summary["layers"]]
    print(f"image: {len(blobs)} gzip layers, {common.fmt_mb(summary['total_tar'])} "
          f"uncompressed, {common.fmt_mb(summary['total_gz'])} compressed", file=sys.stderr)
    work = os.path.join(common.WORK, "pull-runs")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    out = os.path.join(work, "out")
    ref = f"oci:{layout}:{tag}"
    env = imgscan_env()

    def fresh() -> None:
        common.rmtree(out)
        os.makedirs(out)

    def clean() -> None:
        common.rmtree(out)

    seq_script = shell_baseline(blobs, out, parallel=False)
    par_script = shell_baseline(blobs, out, parallel=True)
    contenders = [
        Contender("imgscan pull", lambda: run_timed(
            imgscan_cmd("pull", ref, "--root", os.path.join(out, "store")), env=env),
            fresh, clean),
        Contender("gzip -dc | tar -x (sequential)", lambda: run_timed(seq_script), fresh, clean),
        Contender("gzip -dc | tar -x (parallel &)", lambda: run_timed(par_script), fresh, clean),
    ]
    common.interleave(contenders, args.runs, between=common.sync_and_settle)
    table = common.contender_table(contenders, "gzip -dc | tar -x (sequential)")
    print(table)
    ratio = contenders[0].median / contenders[1].median
    verdict = (f"**Target met**: imgscan pull is {ratio:.2f}x the sequential shell loop "
               f"(target ≤ {TARGET}x)." if ratio <= TARGET else
               f"**Target missed**: imgscan pull is {ratio:.2f}x the sequential shell loop "
               f"(target ≤ {TARGET}x, over by {(ratio / TARGET - 1) * 100:.0f}%).")
    print(verdict)

    profile_md = ""
    if args.profile:
        profile_md = profile(ref, env, out)
        print(profile_md)

    if args.write:
        layers_desc = ", ".join(f"{'+'.join(lay['paths'])} ({common.fmt_mb(lay['tar_size'])})"
                                for lay in summary["layers"])
        flag = ' --profile' if args.profile else ''
        body = f"""## Pull: `imgscan pull` vs `gzip -dc | tar -x` (issue 2)

Whole-process `imgscan pull oci:LAYOUT:v1 --root FRESH` of a {len(blobs)}-layer gzip OCI
layout built from this machine's own files ({layers_desc}; {common.fmt_mb(summary['total_tar'])}
uncompressed, {common.fmt_mb(summary['total_gz'])} gzip), against a shell script that runs
`mkdir D/i; gzip -dc LAYER_i | tar -x -C D/i` for each layer, sequentially and with one `&`
per layer. The baseline verifies nothing and writes no index: it is the floor. Fresh
output directory each run, `sync` before each run, page cache warm for the blobs.
Medians of {args.runs} interleaved runs (after one warm-up round); peak RSS is that of the
largest single process (`wait4` rusage).

Reproduce: `python3 bench/bench_pull.py --runs {args.runs} --write{flag}`

Machine: {common.machine_line()}

{table}

{verdict}
{profile_md}"""
        common.write_section("pull", body)
    return 0


def profile(ref: str, env: dict[str, str], out: str) -> str:
    """Where imgscan pull spends its time: py-spy over the real CLI (all threads), and
    cProfile of the same import with one worker so that every call is on the main thread."""
    parts = ["", "### Where the time goes", ""]
    pyspy = os.path.join(common.PEERS, "pyspy", "bin", "py-spy")
    if os.path.exists(pyspy):
        common.rmtree(out)
        os.makedirs(out)
        with tempfile.NamedTemporaryFile(suffix=".txt", delete=False) as tf:
            raw = tf.name
        subprocess.run([pyspy, "record", "--nonblocking", "-r", "200", "-f", "raw", "-o", raw,
                        "--", *imgscan_cmd("pull", ref, "--root", os.path.join(out, "store"))],
                       env=env, check=True, capture_output=True)
        parts += ["py-spy (`py-spy record -f raw`, all threads, 200 Hz), share of samples in "
                  "which the function is on the stack (self = innermost frame):", "",
                  summarize_pyspy(raw), ""]
        os.unlink(raw)
    common.rmtree(out)
    os.makedirs(out)
    prof = os.path.join(common.WORK, "pull.prof")
    code = ("import sys; from imgscan.images.open import open_image; "
            "from imgscan.store.store import Store; "
            "img = open_image(sys.argv[1]); "
            "Store(sys.argv[2], jobs=1).import_image(img)")
    runner = os.path.join(common.WORK, "pull_runner.py")
    with open(runner, "w") as f:  # python 3.11's cProfile has no -c
        f.write(code.replace("; ", "\n") + "\n")
    subprocess.run([sys.executable, "-m", "cProfile", "-o", prof, runner, ref,
                    os.path.join(out, "store")], env=env, check=True, capture_output=True)
    common.rmtree(out)
    import io
    import pstats

    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf)
    total = st.total_tt  # type: ignore[attr-defined]
    rows = []
    for (fn, line, name), (_cc, nc, tt, ct, _callers) in sorted(
            st.stats.items(), key=lambda kv: -kv[1][2])[:15]:  # type: ignore[attr-defined]
        rows.append([f"`{os.path.basename(fn)}:{line}({name})`", nc, f"{tt:.2f}",
                     f"{tt / total * 100:.1f}%", f"{ct:.2f}"])
    parts += [f"cProfile of the same import with one worker (`Store(root, jobs=1)`), "
              f"total {total:.2f}s, top functions by self time:", "",
              common.md_table(["function", "calls", "self s", "self %", "cumulative s"], rows),
              ""]
    return "\n".join(parts)


def summarize_pyspy(raw_path: str, top: int = 15) -> str:
    """Aggregate py-spy's raw (collapsed stack) output into self and total shares."""
    self_c: dict[str, int] = {}
    total_c: dict[str, int] = {}
    n = 0
    with open(raw_path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            c = int(count)
            frames = [fr.split(" (")[0] + " (" + os.path.basename(fr.split(" (")[1].split(":")[0])
                      + ")" if " (" in fr else fr for fr in stack.split(";")]
            n += c
            self_c[frames[-1]] = self_c.get(frames[-1], 0) + c
            for fr in set(frames):
                total_c[fr] = total_c.get(fr, 0) + c
    if not n:
        return "(no samples)"
    rows = []
    for fr, c in sorted(self_c.items(), key=lambda kv: -kv[1])[:top]:
        rows.append([f"`{fr}`", f"{c / n * 100:.1f}%", f"{total_c[fr] / n * 100:.1f}%"])
    return common.md_table(["function (file)", "self", "total"], rows)


if __name__ == "__main__":
    sys.exit(main())
