"""The warm path (issue 13): rules validated and compiled once per content of the rule
files, a prefilter that costs nothing for small inputs, and commands that import only what
they use (bounded with ``python -X importtime``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from clihelp import SRC
from imgscan.secrets import rulecache
from imgscan.secrets import rules as R
from imgscan.secrets.prefilter import AhoCorasickPrefilter, SmallPrefilter

RULE = '''
[[rules]]
id = "my-token"
title = "My token"
severity = "high"
regex = '(?P<secret>mytok_[a-z0-9]{12})'
keywords = ["mytok_"]
'''


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
