"""The warm path (issue 13): rules validated and compiled once per content of the rule
files, a prefilter that costs nothing for small inputs, and commands that import only what
they use (bounded with ``python -X importtime``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clihelp import MY_TOKEN_RULE as RULE
from clihelp import SRC
from imgscan.secrets import rulecache
from imgscan.secrets import rules as R
from imgscan.secrets.prefilter import AhoCorasickPrefilter, SmallPrefilter


def test_rules_are_cached_by_content_and_invalidated_by_an_edit(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSCAN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(R, "_LOADED", {})
    d = tmp_path / "rules"
    d.mkdir()
    (d / "mine.toml").write_text(RULE)
    first = R.load_rules([d])
    assert list((tmp_path / "cache" / "rules").glob("*.pickle"))
    calls = []
    monkeypatch.setattr(R, "_LOADED", {})
    real = R._load_rules
    monkeypatch.setattr(R, "_load_rules", lambda *a: calls.append(a) or real(*a))
    again = R.load_rules([d])
    assert not calls and again.digest == first.digest  # from the cache, not validated again
    rule = again.by_id("my-token")
    assert rule is not None and rule.regex.search(b"x mytok_abcdefabcdef y")
    (d / "mine.toml").write_text(RULE.replace("{12}", "{10}"))
    monkeypatch.setattr(R, "_LOADED", {})
    edited = R.load_rules([d])
    assert calls and edited.digest != first.digest


def test_a_cache_file_writable_by_others_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSCAN_CACHE_DIR", str(tmp_path))
    rulecache.cached("k", lambda: "value")
    path = tmp_path / "rules" / "k.pickle"
    os.chmod(path, 0o666)
    assert rulecache.cached("k", lambda: "fresh") == "fresh"


def test_small_prefilter_finds_what_aho_corasick_finds():
    kw = {"token": [0], "ghp_": [1], "aws": [0, 2], "ken": [3]}
    buf = b"TOKEN=ghp_x tokentoken AWS_KEY aWs ken"
    assert SmallPrefilter(kw).hits(buf) == sorted(AhoCorasickPrefilter(kw).hits(buf),
                                                  key=lambda h: (h[1], h[0]))


def _imports(*args: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "imgscan", *args],
                       capture_output=True, text=True, env=env, timeout=120)
    mods = set()
    for line in p.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            mods.add(line.rsplit("|", 1)[1].strip())
    return mods


HEAVY_EVERYWHERE = {"jsonschema", "imgscan.reports.json_writer", "imgscan.reports.html"}
NOT_FOR_MOUNT = {"imgscan.analyzers.registry", "imgscan.scanner", "imgscan.secrets",
                 "imgscan.images.registry", "imgscan.analyzers.dispatch", "click.shell_completion",
                 "imgscan.reports.interface", "concurrent.futures.process", "importlib.metadata"}


@pytest.mark.parametrize("args", [["mount", "--help"], ["umount", "--help"]])
def test_mount_and_umount_import_no_analyzer_writer_or_registry_client(args):
    mods = _imports(*args)
    assert "imgscan.cli" in mods
    assert not mods & (HEAVY_EVERYWHERE | NOT_FOR_MOUNT), sorted(mods & (HEAVY_EVERYWHERE
                                                                          | NOT_FOR_MOUNT))
    assert not [m for m in mods if m.startswith(("imgscan.analyzers", "imgscan.reports."))]


def test_a_warm_scan_imports_no_jsonschema(tmp_path):
    from test_scan_stream import build

    layout = build(tmp_path)
    root = str(tmp_path / "store")
    env_args = ["scan", f"oci:{layout}:v1", "--root", root, "--format", "json", "-o",
                os.devnull]
    _imports(*env_args)
    mods = _imports(*env_args)
    assert "imgscan.scanner" in mods
    assert not mods & HEAVY_EVERYWHERE - {"imgscan.reports.json_writer"}
    assert "imgscan.images.registry" not in mods  # an OCI layout needs no registry client
    images = _imports("images", "--root", root)
    assert not images & {"jsonschema", "imgscan.scanner", "imgscan.analyzers.registry"}


def test_layer_sources_and_streamed_dispatch_never_import_the_store():
    code = ("import sys, imgscan.layers.blob, imgscan.layers.stored, imgscan.layers.tarwalk, "
            "imgscan.analyzers.stream, imgscan.analyzers.layerview; "
            "print(sorted(m for m in sys.modules if m.startswith(('imgscan.mount', "
            "'imgscan.store', 'imgscan.reports'))))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": SRC}, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


# -- ``imgscan scan`` without click (cli_scan): same bytes, same exit codes -----------------

#: run ``imgscan`` through the entry (``fast``) or straight through click (``click``), with the
#: report's clock fixed (``created``, ``timings``) so that two runs can be compared byte for
#: byte; the modules loaded are written to $MODULES_OUT
RUN = r'''
import atexit, datetime, json, os, sys, types
which, sys.argv = sys.argv[1], ["imgscan", *sys.argv[2:]]
import imgscan.scanner as scanner
class Clock(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=tz)
scanner._dt = types.SimpleNamespace(datetime=Clock, UTC=datetime.UTC)
scanner.time = types.SimpleNamespace(monotonic=lambda: 100.0)
import imgscan.daemonscan as daemonscan
daemonscan.time = scanner.time
atexit.register(lambda: open(os.environ["MODULES_OUT"], "w").write(json.dumps(sorted(sys.modules))))
if which == "fast":
    from imgscan.cli_fast import main
else:
    from imgscan.cli import main
main()
'''

IGNORE = """
[[ignore]]
rule = "secret/github-*"
reason = "a test token"

[[ignore]]
rule = "nothing/*"
reason = "matches nothing: a warning"
"""

POLICY = """
version = 1
severity = "high"

[limits.severity]
critical = 0

[[banned_packages]]
purl = "pkg:npm/left-pad"
reason = "no left-pad"

[image]
require_non_root = true
max_age_days = 30
"""


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """An image (a layout and the same image pulled into the store), its report cached."""
    from clihelp import imgscan
    from test_scan_e2e import build

    tmp = tmp_path_factory.mktemp("warmscan")
    layout, root = build(tmp), str(tmp / "store")
    env = {"IMGSCAN_CACHE_DIR": str(tmp / "cache"), "COLUMNS": "120"}
    assert imgscan("pull", f"oci:{layout}:v1", root=root, env=env).code == 0
    files = {"ignore": tmp / "ignore.toml", "policy": tmp / "policy.toml",
             "baseline": tmp / "baseline.json"}
    files["ignore"].write_text(IGNORE)
    files["policy"].write_text(POLICY)
    first = imgscan("scan", f"oci:{layout}:v1", "--format", "json", "--analyzers", "npm",
                    root=root, env=env)
    files["baseline"].write_text(first.out)
    return {"layout": layout, "root": root, "env": env, "tmp": tmp,
            **{k: str(v) for k, v in files.items()}}


def _run(which: str, argv: list[str], warm: dict, cwd: Path) -> tuple:
    cwd.mkdir()
    env = {**os.environ, **warm["env"], "PYTHONPATH": SRC, "IMGSCAN_ROOT": warm["root"],
           "MODULES_OUT": str(cwd / ".modules")}
    env.pop("IMGSCAN_DEBUG", None)
    p = subprocess.run([sys.executable, "-c", RUN, which, *argv], capture_output=True,
                       text=True, env=env, cwd=cwd, timeout=300)
    modules = set(json.loads((cwd / ".modules").read_text()))
    (cwd / ".modules").unlink()
    files = {f.name: f.read_bytes() for f in sorted(cwd.iterdir())}
    return (p.returncode, p.stdout, p.stderr, files), modules


CASES = [
    ["--format", "json"],
    ["--format", "table", "--packages", "--elf", "-w"],
    ["--format", "table"],
    ["--format", "sarif", "--fail-on", "high"],
    ["--format", "cyclonedx=c.json", "--format", "spdx", "-o", "s.json", "--fail-on=medium"],
    ["--format", "json", "--ignore-file", "{ignore}", "--fail-on", "high"],
    ["--format", "json", "--baseline", "{baseline}", "--fail-on", "low", "--analyzers", "npm"],
    ["--format=json", "--policy", "{policy}", "--max-age-days", "30"],
    ["--format", "html=r.html", "--format", "atomic", "--analyzers", "npm,secrets",
     "--no-hidden", "--show-secrets"],
    ["--format", "json", "--disable-rule", "github-pat", "--disable-rule", "x", "--jobs", "1"],
    ["--format", "nope"],  # the library's usage errors, exit 2
    ["--fail-on", "extreme"],
    ["--analyzers", "nosuch"],
    ["--format", "json", "--ignore-file", "{tmp}/absent.toml"],
]


@pytest.mark.parametrize("extra", CASES, ids=[" ".join(c) for c in CASES])
def test_the_fast_path_writes_what_click_writes(warm, tmp_path, extra):
    args = [a.format(**warm) for a in extra]
    for image in (f"oci:{warm['layout']}:v1", "localhost/layout:v1"):
        argv = ["scan", image, *args, "--root", warm["root"]]
        fast, fast_mods = _run("fast", argv, warm, tmp_path / f"fast{len(image)}")
        slow, slow_mods = _run("click", argv, warm, tmp_path / f"click{len(image)}")
        assert "click" not in fast_mods and "click" in slow_mods
        assert fast == slow
        assert fast[1] or fast[3] or fast[0] == 2, fast  # something was written


def test_a_missing_image_is_the_same_error(warm, tmp_path):
    argv = ["scan", f"oci:{warm['tmp']}/nowhere:v1", "--root", warm["root"]]
    fast, fast_mods = _run("fast", argv, warm, tmp_path / "fast")
    assert "click" not in fast_mods
    assert fast[0] == 3 and fast[2].startswith("imgscan: error: ")
    assert fast == _run("click", argv, warm, tmp_path / "click")[0]


@pytest.mark.parametrize("argv", [
    ["scan", "--help"], ["scan", "x", "--bogus"], ["scan"], ["scan", "a", "b"],
    ["scan", "x", "--jobs", "0"], ["scan", "x", "--jobs", "65"], ["scan", "x", "-wo", "f"],
    ["scan", "x", "--platform", "linux"], ["scan", "x", "--all"], ["scan", "x", "--vulns"],
    ["scan", "x", "--fail-on", "high", "--fail-on", "low"], ["scan", "x", "--packages=1"],
    ["scan", "x", "--", "y"], ["scan", "x", "--baseline", "/nonexistent.json"],
    ["scan", "x", "--rules", "/nonexistent"], ["scan", "x", "--tls-verify", "maybe"],
    ["scan", "x", "--max-age-days", "0"], ["scan", "x", "-o"], ["--quiet", "scan", "x"],
    ["scan", "x", "--creds", "u:p", "--registry-token", "t"], ["scan", ""],
])
def test_unusual_command_lines_go_to_click(warm, tmp_path, argv):
    from imgscan.cli_scan import parse as parse_scan

    assert parse_scan(argv) is None
    fast, fast_mods = _run("fast", argv, warm, tmp_path / "fast")
    assert "click" in fast_mods  # handed to click: its messages, its exit codes
    assert fast == _run("click", argv, warm, tmp_path / "click")[0]
    assert fast[0] == 0 if "--help" in argv else fast[0] != 0


@pytest.mark.parametrize("extra", [
    [], ["--format", "json", "-o", "r.json", "--fail-on", "high", "-w", "--packages"],
    ["--registry-token=tok", "--tls-verify=true"],
    ["--format=sarif=s.sarif", "--format", "table", "--rules", "{tmp}", "--rules", "{tmp}",
     "--disable-rule", "a", "--jobs=3", "--max-entries", "7", "--max-layer-size", "99",
     "--platform", "linux/arm64/v8", "--keep", "--tls-verify", "false", "--creds", "u:p",
     "--cert-dir", "{tmp}", "--authfile", "{ignore}", "--elf", "--scan-binaries",
     "--analyzers", "npm", "--max-age-days", "12", "--ignore-file", "{ignore}",
     "--baseline", "{baseline}", "--policy", "{policy}", "--show-secrets", "--no-hidden"],
])
def test_the_fast_path_parses_as_click_does(warm, extra):
    from imgscan.cli import main as group
    from imgscan.cli_scan import parse as parse_scan

    argv = ["scan", "img", *(a.format(**warm) for a in extra)]
    parsed = parse_scan(argv)
    assert parsed is not None
    image, kw = parsed
    params = group.commands["scan"].make_context("scan", argv[1:]).params
    assert params.pop("image") == image
    assert {k: params.pop(k) for k in kw} == kw
    assert not any(params.values()), params  # --all, --cache, --vulns, ...: not given


def test_a_warm_scan_on_the_fast_path_imports_little(warm):
    argv = ["scan", f"oci:{warm['layout']}:v1", "--root", warm["root"], "--format", "json",
            "-o", os.devnull, "--fail-on", "high"]
    env = {**os.environ, **warm["env"], "PYTHONPATH": SRC}
    for _ in range(2):  # the first one may be a miss (other analyzers than the fixture's)
        p = subprocess.run([sys.executable, "-X", "importtime", "-m", "imgscan", *argv],
                           capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 1, p.stderr  # the GitHub token is high
    mods = {line.rsplit("|", 1)[1].strip() for line in p.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}
    assert "imgscan.scanner" in mods, p.stderr[-3000:]
    # the JSON text is the one the first of the two runs kept: no writer, no orjson
    unwanted = {"orjson", "imgscan.reports.common", "click", "jsonschema", "tomllib",
                "tarfile", "importlib.metadata", "concurrent.futures", "multiprocessing",
                "imgscan.cli", "imgscan.clioptions",
                "imgscan.images.registry", "imgscan.images.compression",
                "imgscan.analyzers.dispatch", "imgscan.analyzers.stream",
                "imgscan.secrets.engine", "imgscan.secrets.rules", "imgscan.gate.ignore",
                "imgscan.gate.policyfile", "imgscan.gate.baseline", "imgscan.store.importer",
                "imgscan.store.maintenance", "imgscan.store.extract", "imgscan.layers.tarwalk"}
    assert not mods & unwanted, sorted(mods & unwanted)
    plugins = [m for m in mods if m.startswith("imgscan.analyzers.") and m.split(".")[2] not in
               {"interface", "identity", "pluginset", "registry", "reportcache"}]
    assert not plugins, plugins


def test_a_hit_writes_the_kept_json_text_as_the_writer_would(warm, tmp_path):
    """The second hit writes the text kept by the first one, followed by its own times;
    byte for byte what rendering the report gives (checked with the kept text removed)."""
    argv = ["scan", f"oci:{warm['layout']}:v1", "--root", warm["root"], "--format", "json",
            "--fail-on", "critical"]
    kept = os.path.join(warm["root"], "cache", "reports")
    runs = []
    for i in range(3):
        if i == 2:
            heads = [f for f in os.listdir(kept) if f.endswith(".json-head")]
            assert heads
            for f in heads:
                os.unlink(os.path.join(kept, f))
        runs.append(_run("fast", argv, warm, tmp_path / f"run{i}"))
    (first, _), (second, modules), (third, rendered) = runs
    assert "imgscan.reports.json_writer" not in modules  # not rendered: read back
    assert "imgscan.reports.json_writer" in rendered
    assert first == second == third
    assert json.loads(second[1])["created"] == "2026-01-02T03:04:05+00:00"


@pytest.mark.parametrize("extra", [["--ignore-file", "{ignore}"], ["--policy", "{policy}"],
                                   ["--baseline", "{baseline}"]])
def test_a_gate_that_changes_the_report_renders_it(warm, tmp_path, extra):
    argv = ["scan", f"oci:{warm['layout']}:v1", "--root", warm["root"], "--format", "json",
            *(a.format(**warm) for a in extra)]
    _run("fast", argv[:-2], warm, tmp_path / "plain")  # a kept text exists
    out, modules = _run("fast", argv, warm, tmp_path / "gated")
    assert "imgscan.reports.json_writer" in modules
    assert out == _run("click", argv, warm, tmp_path / "click")[0]


def test_a_kept_text_writable_by_others_is_not_used(tmp_path):
    from imgscan.analyzers import reportcache

    reportcache.put_head(str(tmp_path), "k", "s", "{\n  \"x\": 1,")
    assert reportcache.get_head(str(tmp_path), "k", "s") == "{\n  \"x\": 1,"
    os.chmod(tmp_path / "reports" / "k.s.json-head", 0o666)
    assert reportcache.get_head(str(tmp_path), "k", "s") is None
    assert reportcache.get_head(str(tmp_path), "k", "other") is None


def test_the_entry_point_fingerprint_sees_a_distribution_added_in_the_process(tmp_path,
                                                                              monkeypatch):
    from imgscan import entrypoints

    monkeypatch.syspath_prepend(str(tmp_path))
    before = entrypoints.fingerprint()
    assert entrypoints.fingerprint() == before  # remembered within the process
    dist = tmp_path / "late-1.0.dist-info"
    dist.mkdir()
    (dist / "entry_points.txt").write_text("[imgscan.reports]\nlate = late:W\n")
    os.utime(tmp_path, ns=(1, os.stat(tmp_path).st_mtime_ns + 1))  # a coarse clock
    assert entrypoints.fingerprint() != before


def test_mkstemp_makes_a_new_private_file(tmp_path):
    from imgscan.atomic import mkstemp

    fd, path = mkstemp(str(tmp_path), prefix=".x-", suffix=".tmp")
    os.close(fd)
    fd2, path2 = mkstemp(str(tmp_path), prefix=".x-", suffix=".tmp")
    os.close(fd2)
    assert path != path2 and os.path.isabs(path)
    assert os.path.basename(path).startswith(".x-") and path.endswith(".tmp")
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_the_rules_key_is_remembered_only_for_settled_files(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text(RULE)
    first = rulecache.rules_key([f], "x")
    f.write_text(RULE.replace("{12}", "{10}"))  # same size, maybe the same mtime tick
    assert rulecache.rules_key([f], "x") != first
    old = os.stat(f).st_mtime_ns - 10_000_000_000
    os.utime(f, ns=(old, old))
    settled = rulecache.rules_key([f], "x")
    assert any(k[-1] == "x" and k[0][0] == str(f) for k in rulecache._KEYS)
    assert rulecache.rules_key([f], "x") == settled
    f.write_text(RULE)  # written again: a new mtime, read again
    assert rulecache.rules_key([f], "x") == first


def test_every_scan_option_is_parsed_by_the_fast_path_or_left_to_click():
    """A new ``scan`` option must be added to the fast path's table (or to the list of
    options whose command lines go to click): otherwise a plain command line would reach
    the shared body without it."""
    from imgscan import cli_scan
    from imgscan.cli import main as group

    click_names = {p.name for p in group.commands["scan"].params}
    fast = {kw for kw, _ in cli_scan._OPTIONS.values()} | set(cli_scan._DEFAULTS)
    left_to_click = {"image", "scan_all", "atomic_scanin", "atomic_scanout", "output_dir",
                     "cache_url", "vulns", "db_path", "only_fixed", "strict_reachability"}
    assert fast <= click_names
    assert click_names - fast == left_to_click
    for given in (["--all"], ["--cache", "redis://h"], ["--vulns"], ["--only-fixed"],
                  ["--atomic-scanin", "/in"]):
        assert cli_scan.parse(["scan", "img", *given]) is None, given
