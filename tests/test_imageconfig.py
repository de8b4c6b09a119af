"""ImageConfigAnalyzer over configs written by umoci (a real OCI tool) and hand-made
edge cases (nulls, wrong types, names resolved through the image's /etc/passwd)."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from imgscan.analyzers.imageconfig import ImageConfigAnalyzer
from imgscan.analyzers.interface import ScanOptions
from imgscan.analyzers.view import DirView
from imgscan.model import Severity


def _umoci_config(tmp_path, *args: str) -> dict:
    layout = tmp_path / "layout"
    subprocess.run(["umoci", "init", "--layout", str(layout)], check=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:t"], check=True)
    subprocess.run(["umoci", "config", "--image", f"{layout}:t", *args], check=True)
    idx = json.loads((layout / "index.json").read_text())
    man = json.loads((layout / "blobs/sha256" / idx["manifests"][0]["digest"][7:]).read_text())
    return json.loads((layout / "blobs/sha256" / man["config"]["digest"][7:]).read_text())


def _rules(res) -> dict[str, tuple[Severity, str]]:
    return {f.rule_id: (f.severity, f.location.config_key) for f in res.findings}


def test_risky_umoci_config(tmp_path) -> None:
    cfg = _umoci_config(
        tmp_path, "--config.user=root", "--config.exposedports=22/tcp",
        "--config.exposedports=8080", "--config.label=RUN=docker run --privileged -v /:/host X",
        "--created=2020-01-02T03:04:05.123456789Z",
        "--history.created_by=ADD https://example.com/x.tar.gz /opt/ # buildkit")
    root = tmp_path / "root"
    root.mkdir()
    res = ImageConfigAnalyzer().post_analyze(DirView(str(root), cfg), [], None)
    assert _rules(res) == {
        "config/root-user": (Severity.MEDIUM, "config.User"),
        "config/ssh-port": (Severity.MEDIUM, "config.ExposedPorts.22/tcp"),
        "config/privileged-label": (Severity.MEDIUM, "config.Labels.RUN"),
        "config/image-age": (Severity.LOW, "created"),
        "config/remote-add": (Severity.MEDIUM, "history[0]"),
        "config/no-healthcheck": (Severity.INFO, "config.Healthcheck"),
    }
    add = next(f for f in res.findings if f.rule_id == "config/remote-add")
    assert add.evidence == "https://example.com/x.tar.gz"
    age = next(f for f in res.findings if f.rule_id == "config/image-age")
    want_days = (datetime.now(UTC) - datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)).days
    assert f"{want_days} days" in age.title
    assert res.warnings == []


def test_clean_umoci_config(tmp_path) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    cfg = _umoci_config(tmp_path, "--config.user=app:app", "--config.exposedports=8080/tcp",
                        f"--created={now}", "--history.created_by=COPY app /app # buildkit")
    cfg["config"]["Healthcheck"] = {"Test": ["CMD", "/app/health"]}
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n")
    res = ImageConfigAnalyzer().post_analyze(DirView(str(root), cfg), [], None)
    assert res.findings == [] and res.warnings == []


def test_user_name_mapping_to_uid_zero_is_root(tmp_path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("toor:x:0:0::/root:/bin/sh\n")
    for user in ("toor", "0:1000", "root:root", ""):
        res = ImageConfigAnalyzer().post_analyze(
            DirView(str(root), {"config": {"User": user, "Healthcheck": {"Test": ["NONE"]}}}),
            [], None)
        assert "config/root-user" in _rules(res), user
        assert _rules(res)["config/no-healthcheck"][0] == Severity.INFO
    for user in ("1000", "nobody", "1000:0"):
        res = ImageConfigAnalyzer().post_analyze(DirView(str(root), {"config": {"User": user}}),
                                                 [], None)
        assert "config/root-user" not in _rules(res), user


@pytest.mark.parametrize("cfg", [
    {"config": None, "history": None, "created": None},
    {"config": {"User": 5, "ExposedPorts": ["22"], "Labels": "x"}, "history": "nope"},
    {"config": {}, "history": [None, 7, {"created_by": None}], "created": "yesterday"},
    {"config": {"ExposedPorts": {"22": None, "22/udp": {}}}},
])
def test_malformed_config_gives_warnings_not_errors(cfg: dict, tmp_path) -> None:
    res = ImageConfigAnalyzer().post_analyze(DirView(str(tmp_path), cfg), [], None)
    rules = _rules(res)
    if cfg.get("config", {}) and isinstance(cfg["config"].get("ExposedPorts"), dict):
        assert "config/ssh-port" in rules  # bare "22" is tcp; 22/udp is not ssh
        assert len([f for f in res.findings if f.rule_id == "config/ssh-port"]) == 1
    if cfg.get("created") == "yesterday" or isinstance(cfg.get("history"), str):
        assert res.warnings


def test_max_age_option_and_epoch(tmp_path) -> None:
    created = (datetime.now(UTC) - timedelta(days=40)).isoformat().replace("+00:00", "Z")
    view = DirView(str(tmp_path), {"created": created, "config": {"User": "1"}})
    strict = ImageConfigAnalyzer(ScanOptions(extra={"max_age_days": 30}))
    assert "config/image-age" in _rules(strict.post_analyze(view, [], None))
    assert "config/image-age" not in _rules(ImageConfigAnalyzer().post_analyze(view, [], None))
    epoch = DirView(str(tmp_path), {"created": "1970-01-01T00:00:00Z"})
    assert "config/image-age" not in _rules(ImageConfigAnalyzer().post_analyze(epoch, [], None))


def test_classic_builder_history_and_layers(tmp_path) -> None:
    from imgscan.model import LayerRef

    view = DirView(str(tmp_path), {"history": [
        {"created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
        {"created_by": "/bin/sh -c #(nop)  CMD [\"sh\"]", "empty_layer": True},
        {"created_by": "/bin/sh -c #(nop) ADD --chown=1:1 http://h.example/a.tgz /a"},
        {"created_by": "ADD --checksum=sha256:00 https://h.example/b /b # buildkit"},
    ]})
    view.layers = [LayerRef(0, "sha256:" + "a" * 64), LayerRef(1, "sha256:" + "b" * 64),
                   LayerRef(2, "sha256:" + "c" * 64)]
    res = ImageConfigAnalyzer().post_analyze(view, [], None)
    adds = [(f.location.config_key, f.severity, f.location.layer.index, f.evidence)
            for f in res.findings if f.rule_id == "config/remote-add"]
    assert adds == [("history[2]", Severity.MEDIUM, 1, "http://h.example/a.tgz"),
                    ("history[3]", Severity.LOW, 2, "https://h.example/b")]
