"""The gate: threshold, ignore file, baseline, policy file, version ordering, the pipeline.

Version ordering is checked against the real tools (``dpkg --compare-versions`` and rpm's own
``rpm.vercmp``), not against expectations written here.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from imgscan.errors import UsageError
from imgscan.gate import (
    EXIT_GATE_FAILED,
    EXIT_PASS,
    apply_baseline,
    apply_ignores,
    evaluate_gate,
    evaluate_policy,
    is_root_user,
    load_baseline,
    load_ignore_file,
    load_policy,
    parse_fail_on,
    parse_ignore_file,
    parse_policy,
    parse_size,
    purl_base,
    run_gate,
)
from imgscan.model import Finding, Location, Package, Severity
from imgscan.reports import validate_report
from imgscan.reports.interface import render
from imgscan.versions import dpkg_compare, pep440_compare, rpm_compare, semver_compare
from test_reports_fixture import OS, make_report

TODAY = date(2026, 11, 28)
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


# --- gate --------------------------------------------------------------------------------

@pytest.mark.parametrize(("fail_on", "passed", "n"), [
    (None, True, 0), (Severity.CRITICAL, False, 1), (Severity.HIGH, False, 2),
    (Severity.INFO, False, 5),
])
def test_gate_threshold(fail_on, passed, n) -> None:
    g = evaluate_gate(make_report().findings, fail_on)
    assert g.passed is passed and len(g.failing) == n
    assert g.exit_code == (EXIT_PASS if passed else EXIT_GATE_FAILED)
    assert g.counts == {"critical": 1, "high": 1, "medium": 1, "low": 1, "info": 1}


def test_gate_policy_findings_fail_without_threshold() -> None:
    f = Finding("policy/max-size", Severity.INFO, "policy", "too big").with_id()
    g = evaluate_gate([f], None)
    assert not g.passed and "1 policy violation" in g.summary()
    assert evaluate_gate([f], None, policy_fails=False).passed


def test_gate_without_findings_passes() -> None:
    assert evaluate_gate([], Severity.INFO).passed


@pytest.mark.parametrize(("text", "sev"), [("HIGH", Severity.HIGH), ("none", None),
                                           (None, None), ("low", Severity.LOW)])
def test_parse_fail_on(text, sev) -> None:
    assert parse_fail_on(text) is sev


def test_parse_fail_on_rejects_unknown() -> None:
    with pytest.raises(UsageError, match="unknown severity 'urgent'"):
        parse_fail_on("urgent")


# --- ignore file -------------------------------------------------------------------------

def _ids():
    return {f.rule_id: f.id for f in make_report().findings}


def test_ignore_by_id_rule_path_and_package() -> None:
    r = make_report()
    r.findings.append(Finding("permissions/setuid", Severity.HIGH, "permissions", "x",
                              Location("/usr/bin/passwd"),
                              package="pkg:deb/debian/passwd@1?arch=amd64").with_id())
    ign = parse_ignore_file(f"""
version = 1
[[ignore]]
id = "{_ids()['secret/aws-access-key-id']}"
reason = "revoked test key"
expires = 2026-12-31

[[ignore]]
rule = "config/*"
path = "/nowhere/*"
reason = "both selectors must match, so this matches nothing"

[[ignore]]
rule = "config/*"
reason = "config is reviewed separately"

[[ignore]]
package = "pkg:deb/debian/passwd@*"
reason = "passwd must be setuid"
""", "ign.toml")
    out = apply_ignores(r.findings, ign, TODAY)
    assert sorted(f.rule_id for f in out.kept) == [
        "elf/no-relro", "permissions/setuid"]
    assert next(f for f in out.kept if f.rule_id == "permissions/setuid").location.path == \
        "/usr/bin/su"
    assert {rule.index for _, rule in out.ignored} == {1, 3, 4}
    assert [w.message for w in out.warnings] == [
        "ignore file ign.toml: entry 2 (rule='config/*', path='/nowhere/*') matched no finding"]


def test_path_selector_matches_config_keys() -> None:
    ign = parse_ignore_file("[[ignore]]\npath = 'config:Env*'\nreason = 'r'\n", "x")
    out = apply_ignores(make_report().findings, ign, TODAY)
    assert [f.rule_id for f, _ in out.ignored] == ["config/secret-env"]


def test_expired_entries_stop_applying_with_a_warning() -> None:
    ign = parse_ignore_file("""
[[ignore]]
rule = "secret/*"
reason = "temporary"
expires = "2026-11-27"
""", "x")
    assert apply_ignores(make_report().findings, ign, date(2026, 11, 27)).ignored  # last day
    out = apply_ignores(make_report().findings, ign, TODAY)
    assert not out.ignored and len(out.kept) == 5
    assert len(out.warnings) == 1
    assert "expired on 2026-11-27 and no longer applies" in out.warnings[0].message


@pytest.mark.parametrize(("text", "message"), [
    ("[[ignore]\nrule='x'", "ignore file bad.toml: invalid TOML"),
    ("[[ignore]]\nrule = 'x'\nreason = 'r'\nrules = 'y'\n", "entry 1: unknown field(s) rules"),
    ("[[ignore]]\nrule = 'x'\n", "entry 1: a reason is required"),
    ("[[ignore]]\nrule = 'x'\nreason = '  '\n", "entry 1: a reason is required"),
    ("[[ignore]]\nreason = 'r'\n", "entry 1: needs at least one of id, rule, path, package"),
    ("[[ignore]]\nrule='a'\nreason='r'\n[[ignore]]\nrule='b'\nreason='r'\nexpires='2026-13-01'",
     "entry 2: expires '2026-13-01' is not a valid date"),
    ("[[ignore]]\nrule='a'\nreason='r'\nexpires='next week'", "is not a valid date"),
    ("[[ignore]]\nrule='a'\nreason='r'\nexpires=2026-01-01T00:00:00Z", "not a date-time"),
    ("[[ignore]]\nrule=1\nreason='r'\n", "entry 1: rule must be a string"),
    ("ignores = []\n", "unknown top-level key(s) ignores"),
    ("version = 2\n", "unsupported version 2"),
    ("ignore = 'x'\n", "must be an array of tables"),
    ("a = " + "[" * 100_000, "invalid TOML"),
    ("ignore = [1]\n", "entry 1: must be a table"),
])
def test_ignore_file_errors_name_file_and_entry(text, message) -> None:
    with pytest.raises(UsageError) as e:
        parse_ignore_file(text, "bad.toml")
    assert message in str(e.value)
    assert "bad.toml" in str(e.value)


def test_ignore_file_from_disk(tmp_path: Path) -> None:
    p = tmp_path / ".imgscanignore"
    p.write_text("[[ignore]]\nrule = 'elf/*'\nreason = 'vendor binary'\n")
    assert len(load_ignore_file(p).rules) == 1
    with pytest.raises(UsageError, match="cannot read"):
        load_ignore_file(tmp_path / "missing")
    p.write_bytes(b"\xff\xfe[[")
    with pytest.raises(UsageError, match="cannot read"):
        load_ignore_file(p)


# --- baseline ----------------------------------------------------------------------------

def test_baseline_keeps_only_new_findings(tmp_path: Path) -> None:
    old = make_report()
    old.findings = old.findings[:3]
    path = tmp_path / "old.json"
    path.write_text(render(old, "json"))
    new = make_report()
    out = apply_baseline(new, load_baseline(path))
    assert [f.rule_id for f in out.report.findings] == ["elf/no-relro", "config/no-healthcheck"]
    assert len(out.known) == 3
    assert len(new.findings) == 5  # the input is not modified
    validate_report(out.report.to_dict())


def test_baseline_falls_back_to_rule_path_fingerprint() -> None:
    old = make_report().to_dict()
    for f in old["findings"]:
        f["id"] = "0" * 16  # ids from an older id scheme
        f["location"]["line"] = 99  # the secret moved down in the file
    out = apply_baseline(make_report(), old)
    assert out.report.findings == []


def test_baseline_differs_on_fingerprint() -> None:
    old = make_report().to_dict()
    old["findings"][0]["id"] = "0" * 16
    old["findings"][0]["properties"]["fingerprint"] = "another-secret"
    out = apply_baseline(make_report(), old)
    assert [f.rule_id for f in out.report.findings] == ["secret/aws-access-key-id"]


@pytest.mark.parametrize(("content", "message"), [
    ("not json", "cannot read a JSON report"),
    ("[" * 100_000, "cannot read a JSON report"),
    ("[]", "not an imgscan JSON report"),
    ('{"findings": [1]}', "not an imgscan JSON report"),
    ('{"findings": []}', "not an imgscan JSON report"),
])
def test_bad_baseline_files(tmp_path: Path, content, message) -> None:
    p = tmp_path / "b.json"
    p.write_text(content)
    with pytest.raises(UsageError, match=message):
        load_baseline(p)


def test_malformed_baseline_dict() -> None:
    with pytest.raises(UsageError, match="no findings list"):
        apply_baseline(make_report(), {"findings": {}})
    with pytest.raises(UsageError, match=r"findings\[0\] is malformed"):
        apply_baseline(make_report(), {"findings": [{"rule_id": "x"}]})


# --- version ordering against the real tools ---------------------------------------------

DEB_PAIRS = [
    ("1.0", "1.0"), ("1.0~rc1", "1.0"), ("1.0", "1.0a"), ("1.0a", "1.0+b1"),
    ("1.0-1", "1.0-1+deb12u1"), ("1:1.0", "2.0"), ("1:4.13+dfsg1-1+b1", "1:4.13+dfsg1-1"),
    ("3.0.11-1~deb12u2", "3.0.11-1"), ("2.36-9+deb12u4", "2.36-9+deb12u10"),
    ("1.2.3", "1.2.03"), ("0:1.0", "1.0"), ("1.0~~", "1.0~"), ("a", "1"), ("1.0.", "1.0"),
    ("7.88.1-10+deb12u5", "7.88.1-10+deb12u12"), ("2:8.2.3995-1", "2:9.0.1378-2"),
]

RPM_PAIRS = [
    ("1.0", "1.0"), ("1.0", "1.0a"), ("1.0a", "1.0.1"), ("1.0~rc1", "1.0"),
    ("1.0^git1", "1.0"), ("1.0^git1", "1.0.1"), ("1.0", "1.0-1"), ("1.0-2", "1.0-10"),
    ("1:1.0", "2.0"), ("2.0", "1:1.0"), ("1_0", "1.0"), ("1.010", "1.9"), ("1.0", "1.0.0"),
    ("5.4.4-3.el9", "5.4.4-3.el9_1"), ("1.a", "1.1"), ("1.0~rc1", "1.0~rc2"),
    ("1.0^", "1.0"), ("0.9.8zh-1", "0.9.8-1"), ("01", "1"),
]


def _sign(n: int) -> int:
    return (n > 0) - (n < 0)


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg is part of every Debian system")
def test_dpkg_order_matches_dpkg() -> None:
    for a, b in DEB_PAIRS:
        for op, want in (("lt", -1), ("eq", 0), ("gt", 1)):
            real = subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0
            if real:
                assert dpkg_compare(a, b) == want, (a, b)
                assert dpkg_compare(b, a) == -want, (b, a)
                break
        else:
            raise AssertionError(f"dpkg gave no answer for {a} {b}")


def test_rpm_order_matches_rpm() -> None:
    assert shutil.which("rpm"), "rpm is required (apt-get install rpm)"
    calls = "".join(f'io.write(rpm.vercmp("{a}", "{b}"), ",")' for a, b in RPM_PAIRS)
    out = subprocess.run(["rpm", "--eval", f"%{{lua: {calls} }}"], capture_output=True,
                         text=True, check=True).stdout.strip().rstrip(",")
    real = [int(x) for x in out.split(",")]
    assert len(real) == len(RPM_PAIRS)
    mine = [_sign(rpm_compare(a, b)) for a, b in RPM_PAIRS]
    assert mine == [_sign(x) for x in real], list(zip(RPM_PAIRS, mine, real, strict=True))


def test_semver_and_pep440() -> None:
    assert semver_compare("1.0.0-alpha", "1.0.0") < 0
    assert semver_compare("1.0.0-alpha.1", "1.0.0-alpha.beta") < 0
    assert semver_compare("v1.8.0", "1.10.0") < 0
    assert semver_compare("1.0.0+build1", "1.0.0") == 0
    assert semver_compare("v0.0.0-20240101000000-abcdef123456", "v0.0.1") < 0
    assert pep440_compare("5.3.1", "5.4b1") < 0 and pep440_compare("1.0.post1", "1.0") > 0
    with pytest.raises(ValueError):
        semver_compare("banana", "1.0")


# --- policy file -------------------------------------------------------------------------

POLICY = """
version = 1
severity = "high"

[limits.severity]
critical = 0
medium = 5

[limits.category]
config = 1

[[banned_packages]]
purl = "pkg:pypi/pyyaml"
versions = "<5.4"
reason = "CVE-2020-14343: full_load runs code"
severity = "critical"

[[banned_packages]]
purl = "pkg:deb/*/login"
versions = ">=1:4.13, <1:4.14"
reason = "example range with an epoch"

[[banned_packages]]
purl = "pkg:deb/debian/openssl"
versions = "<3.0.11-1~deb12u2"
reason = "not banned: the installed version is exactly the bound"

[[banned_packages]]
purl = "pkg:npm/@types/*"
reason = "no type packages in production images"

[[banned_packages]]
purl = "pkg:golang/github.com/spf13/*"
versions = "==v1.7.*"
reason = "not banned: glob does not match v1.8.0"

[image]
require_non_root = true
max_size = "100MB"
max_age_days = 30
allowed_os = ["alpine:3.*", "debian:11"]
"""


def _violations(policy_text: str = POLICY, report=None):
    pol = parse_policy(policy_text, "p.toml")
    return evaluate_policy(report or make_report(), pol, NOW)


def test_policy_violations() -> None:
    res = _violations()
    by_rule: dict[str, list[Finding]] = {}
    for f in res.findings:
        by_rule.setdefault(f.rule_id, []).append(f)
        assert f.category == "policy" and len(f.id) == 16
    assert sorted(by_rule) == ["policy/banned-package", "policy/base-os", "policy/max-age",
                               "policy/max-findings", "policy/max-size", "policy/root-user"]
    banned = {f.title: f for f in by_rule["policy/banned-package"]}
    assert sorted(banned) == ["banned package @types/node 20.1.0",
                              "banned package PyYAML 5.3.1",
                              "banned package login 1:4.13+dfsg1-1+b1"]
    yaml = banned["banned package PyYAML 5.3.1"]
    assert yaml.severity is Severity.CRITICAL and yaml.package.startswith("pkg:pypi/pyyaml@")
    assert yaml.location.path.endswith("METADATA") and yaml.location.layer is not None
    assert "CVE-2020-14343" in yaml.description
    assert sorted(f.title for f in by_rule["policy/max-findings"]) == [
        "1 critical findings (limit 0)", "2 config findings (limit 1)"]
    # 2026-10-01T12:00:00.12 to 2026-11-28T12:00: 58 days less a fraction of a second
    assert by_rule["policy/max-age"][0].title == "image is 57 days old (limit 30)"
    assert by_rule["policy/base-os"][0].title == "base OS debian:12 is not allowed"
    assert len({f.id for f in res.findings}) == len(res.findings)
    assert res.warnings == []
    r = make_report()
    r.findings += res.findings
    validate_report(r.to_dict())


def test_policy_passes_a_compliant_image() -> None:
    r = make_report()
    r.image = dataclasses.replace(r.image, user="app:app", created="2026-11-20T00:00:00Z")
    res = _violations("""
version = 1
[image]
require_non_root = true
max_size = 123456789
max_age_days = 30
allowed_os = ["debian:12*"]
""", r)
    assert res.findings == []


def test_policy_unknown_created_and_os() -> None:
    r = make_report()
    r.image = dataclasses.replace(r.image, created="")
    r.os = None
    res = _violations('version = 1\n[image]\nmax_age_days = 1\nallowed_os = ["*"]\n', r)
    assert sorted(f.title for f in res.findings) == ["base OS unknown is not allowed",
                                                     "image creation time unknown"]


def test_policy_uncomparable_version_is_a_warning() -> None:
    r = make_report()
    r.packages.append(Package("pypi", "pyyaml", "not a version!", purl="pkg:pypi/pyyaml@x"))
    res = _violations(
        'version = 1\n[[banned_packages]]\npurl = "pkg:pypi/pyyaml"\nversions = "<5.4"\n'
        'reason = "r"\n', r)
    assert [f.title for f in res.findings] == ["banned package PyYAML 5.3.1"]
    assert "cannot compare version 'not a version!'" in res.warnings[0].message


def test_rpm_epoch_from_metadata() -> None:
    r = make_report()
    r.packages = [Package("rpm", "openssl", "3.0.7-27.el9", purl="pkg:rpm/rocky/openssl@x",
                          metadata={"epoch": 1})]
    text = ('version = 1\n[[banned_packages]]\npurl = "pkg:rpm/*/openssl"\n'
            'versions = ">=1:3.0"\nreason = "r"\n')
    assert len(_violations(text, r).findings) == 1
    r.packages = [dataclasses.replace(r.packages[0], metadata={})]
    assert _violations(text, r).findings == []  # epoch 0: older than anything of epoch 1


@pytest.mark.parametrize(("text", "message"), [
    ("version = 1\nbanned = []\n", "Additional properties are not allowed ('banned'"),
    ("severity = 'high'\n", "'version' is a required property"),
    ("version = 1\n[limits.severity]\nurgent = 1\n", "urgent"),
    ("version = 1\n[limits.severity]\nhigh = -1\n", "-1 is less than the minimum of 0"),
    ("version = 1\n[[banned_packages]]\npurl = 'pkg:npm/x'\n", "'reason' is a required"),
    ("version = 1\n[[banned_packages]]\npurl = 'pkg:npm/x@1.0'\nreason = 'r'\n",
     "put the version in 'versions'"),
    ("version = 1\n[[banned_packages]]\npurl = 'pkg:npm/x?arch=1'\nreason = 'r'\n",
     "does not match"),
    ("version = 1\n[[banned_packages]]\npurl = 'pkg:gem/rails'\nversions = '<1.2'\n"
     "reason = 'r'\n", "banned_packages entry 1: < needs a purl with a literal type"),
    ("version = 1\n[[banned_packages]]\npurl = 'pkg:*/x'\nversions = '>=1'\nreason = 'r'\n",
     "got a glob"),
    ("version = 1\n[[banned_packages]]\npurl = 'pkg:pypi/x'\nversions = '<not-a-version'\n"
     "reason = 'r'\n", "is not a pypi version"),
    ("version = 1\n[image]\nmax_size = '12 parsecs'\n", "max_size"),
    ("version = 1\n[image\n", "invalid TOML"),
    ("a = " + "[" * 100_000, "invalid TOML"),
])
def test_policy_errors(text, message) -> None:
    with pytest.raises(UsageError) as e:
        parse_policy(text, "pol.toml")
    assert "policy file pol.toml" in str(e.value)
    assert message in str(e.value)


def test_load_policy(tmp_path: Path) -> None:
    p = tmp_path / "p.toml"
    p.write_text(POLICY)
    assert len(load_policy(p).banned) == 5
    with pytest.raises(UsageError, match="cannot read"):
        load_policy(tmp_path / "nope.toml")


@pytest.mark.parametrize(("user", "root"), [("", True), ("root", True), ("0", True),
                                            ("0:1000", True), ("1000", False),
                                            ("app:app", False), ("rooty", False)])
def test_is_root_user(user, root) -> None:
    assert is_root_user(user) is root


def test_sizes_and_purl_base() -> None:
    assert parse_size("100MB") == 100_000_000 and parse_size("1.5GiB") == 3 * 2**29
    assert parse_size(7) == 7
    assert purl_base("pkg:npm/%40types/node@20.1.0?x=1#sub") == "pkg:npm/@types/node"
    bash = next(p for p in make_report().packages if p.name == "bash")
    assert purl_base(bash.purl) == "pkg:deb/debian/bash"
    assert OS.id == "debian"


# --- the pipeline ------------------------------------------------------------------------

def test_run_gate_pipeline(tmp_path: Path) -> None:
    old = make_report()
    old.findings = [f for f in old.findings if f.rule_id == "elf/no-relro"]
    baseline = json.loads(render(old, "json"))
    ign = parse_ignore_file(f"""
[[ignore]]
id = "{_ids()['secret/aws-access-key-id']}"
reason = "revoked"
[[ignore]]
rule = "policy/banned-package"
package = "pkg:npm/*"
reason = "accepted"
[[ignore]]
rule = "never/matches"
reason = "stale"
[[ignore]]
rule = "config/*"
reason = "old"
expires = 2020-01-01
""", "i.toml")
    pol = parse_policy('version = 1\n[limits.severity]\ncritical = 0\n'
                       '[[banned_packages]]\npurl = "pkg:npm/*"\nreason = "r"\n', "p.toml")
    out = run_gate(make_report(), fail_on=Severity.HIGH, ignore=ign, baseline=baseline,
                   policy=pol, now=NOW)
    rules = sorted(f.rule_id for f in out.report.findings)
    # the secret is ignored (so the critical limit holds), the npm ban is accepted,
    # elf/no-relro is in the baseline, the expired config entry no longer applies
    assert rules == ["config/no-healthcheck", "config/secret-env", "permissions/setuid"]
    assert not out.gate.passed and out.exit_code == EXIT_GATE_FAILED
    assert [f.rule_id for f in out.gate.failing] == ["permissions/setuid"]
    msgs = [w.message for w in out.warnings]
    assert any("entry 3 (rule='never/matches') matched no finding" in m for m in msgs)
    assert any("entry 4 (rule='config/*') expired on 2020-01-01" in m for m in msgs)
    assert not any("entry 2" in m for m in msgs)  # used by a policy finding
    assert [f.rule_id for f in out.known] == ["elf/no-relro"]
    assert len(out.ignored) == 2
    validate_report(out.report.to_dict())
    passing = run_gate(make_report(), fail_on=Severity.CRITICAL, ignore=ign, now=NOW)
    assert passing.gate.passed and passing.exit_code == EXIT_PASS


def test_baseline_before_limits_and_image_rules_never_baselined() -> None:
    pol = parse_policy('version = 1\n[limits.severity]\ncritical = 0\n'
                       '[image]\nrequire_non_root = true\n', "p.toml")
    first = run_gate(make_report(), policy=pol, now=NOW)
    assert sorted(f.title for f in first.report.findings if f.category == "policy") == [
        "1 critical findings (limit 0)", "image runs as root"]
    baseline = json.loads(render(first.report, "json"))  # the old run, violations included
    again = run_gate(make_report(), policy=pol, baseline=baseline, now=NOW)
    assert [f.title for f in again.report.findings] == ["image runs as root"]
    assert not again.gate.passed
