"""A hand-built report that every report and policy test renders.

Its values are chosen, not captured from the program: several package types (a deb with an
epoch, a scoped npm package, a Go module), a finding of every severity (one of them in a file
that a later layer deleted), a config finding, warnings, layers and ELF facts. The planted
secret ``PLANTED_SECRET`` appears nowhere in the model: analyzers redact evidence, and the
tests check that no writer brings it back.
"""

from __future__ import annotations

import dataclasses

from imgscan.model import (
    Finding,
    ImageSummary,
    LayerRef,
    LayerSummary,
    Location,
    OSInfo,
    Package,
    Report,
    ScanWarning,
    Severity,
)
from imgscan.purls import package_purl
from imgscan.reports import validate_report

PLANTED_SECRET = "AKIAIOSFODNN7REALKEY"
REDACTED = "AKIA****************"
DEBUG_MARKER = "internal-debug-blob-7731"
IMAGE_NAME = "registry.example.com/team/webapp:1.4.2"


def _digest(ch: str) -> str:
    return "sha256:" + ch * 64


L0 = LayerRef(0, _digest("a"), "/bin/sh -c #(nop) ADD file:0123 in / ")
L1 = LayerRef(1, _digest("b"), "RUN /bin/sh -c echo $KEY > /root/.aws/credentials")
L2 = LayerRef(2, _digest("c"), "RUN /bin/sh -c rm /root/.aws/credentials && apt-get install")

OS = OSInfo(id="debian", version_id="12", pretty_name="Debian GNU/Linux 12 (bookworm)",
            version_codename="bookworm", source="/etc/os-release")


def _packages() -> list[Package]:
    raw = [
        Package("deb", "login", "1:4.13+dfsg1-1+b1", arch="amd64", source_name="shadow",
                source_version="1:4.13+dfsg1-1", licenses=("GPL-2.0-or-later",),
                locations=("/var/lib/dpkg/status",), layer=L0),
        Package("deb", "bash", "5.2.15-2+b2", arch="amd64", licenses=("GPL-3+",),
                locations=("/var/lib/dpkg/status",), layer=L0),
        Package("deb", "openssl", "3.0.11-1~deb12u2", arch="amd64",
                licenses=("Apache-2.0",), locations=("/var/lib/dpkg/status",), layer=L2),
        Package("pypi", "PyYAML", "5.3.1", licenses=("MIT",),
                locations=("/usr/lib/python3/dist-packages/PyYAML-5.3.1.dist-info/METADATA",),
                layer=L2),
        Package("npm", "@types/node", "20.1.0", licenses=("MIT",),
                locations=("/app/node_modules/@types/node/package.json",), layer=L2),
        Package("golang", "github.com/spf13/cobra", "v1.8.0",
                licenses=(), locations=("/usr/local/bin/app",), layer=L2),
    ]
    return [dataclasses.replace(p, purl=package_purl(p, OS)) for p in raw]


def _findings() -> list[Finding]:
    fs = [
        Finding("secret/aws-access-key-id", Severity.CRITICAL, "secret",
                "AWS access key ID in a file deleted by a later layer",
                Location("/root/.aws/credentials", line=2, column=19, layer=L1, hidden_by=L2),
                description="An AWS access key ID; the file is removed in layer 2 but "
                            "ships in layer 1.",
                evidence=REDACTED,
                properties={"fingerprint": "f00dfeed", "debug": DEBUG_MARKER}),
        Finding("permissions/setuid", Severity.HIGH, "permissions", "setuid-root binary",
                Location("/usr/bin/su", layer=L0), package="",
                description="mode 4755 owner root"),
        Finding("config/secret-env", Severity.MEDIUM, "config",
                "Environment variable looks like a credential",
                Location(config_key="Env[2]"), evidence="DB_PASSWORD=****"),
        Finding("elf/no-relro", Severity.LOW, "elf", "Binary without RELRO",
                Location("/usr/local/bin/app", layer=L2)),
        Finding("config/no-healthcheck", Severity.INFO, "config", "No HEALTHCHECK",
                Location(config_key="Healthcheck")),
    ]
    return [f.with_id() for f in fs]


def make_report() -> Report:
    """A fresh copy each call, so a test may mutate its copy."""
    return Report(
        tool={"name": "imgscan", "version": "0.1.0"},
        image=ImageSummary(name=IMAGE_NAME, id=_digest("1"), digest=_digest("2"), os="linux",
                           architecture="amd64", created="2026-10-01T12:00:00.123456789Z",
                           size=123_456_789, user="", names=(IMAGE_NAME,), source="image"),
        layers=[
            LayerSummary(0, L0.diff_id, _digest("d"), 80_000_000, L0.created_by,
                         "2026-09-01T00:00:00Z", 5000, 2),
            LayerSummary(1, L1.diff_id, _digest("e"), 1024, L1.created_by,
                         "2026-10-01T11:00:00Z", 3, 0),
            LayerSummary(2, L2.diff_id, _digest("f"), 43_455_765, L2.created_by,
                         "2026-10-01T12:00:00Z", 1200, 4),
        ],
        os=OS,
        packages=_packages(),
        findings=_findings(),
        warnings=[
            ScanWarning("truncated gzip member", path="/usr/share/doc/x.gz",
                        analyzer="secrets", layer=L2),
            ScanWarning("malformed ELF header", path="/opt/bad.so", analyzer="elf"),
        ],
        facts={"elf": [
            {"path": "/usr/bin/su", "relro": "full", "canary": True, "nx": True, "pie": True,
             "fortify": "yes", "rpath": "", "runpath": ""},
            {"path": "/usr/local/bin/app", "relro": "none", "canary": False, "nx": True,
             "pie": False, "fortify": "n/a", "rpath": "", "runpath": "$ORIGIN/../lib"},
        ]},
        timings={"total": 2.5, "walk": 1.25},
        created="2026-11-28T10:00:00Z",
    )


def hostile_report() -> Report:
    """Image data as an attacker would write it: markup, script, terminal escapes, quotes."""
    r = make_report()
    evil = '<script>alert("x")</script>\x1b[31m"\'&'
    f = Finding("secret/generic", Severity.HIGH, "secret", "title " + evil,
                Location("/srv/" + evil + ".txt", line=1, layer=L2),
                description="desc " + evil, evidence="****").with_id()
    r.findings.append(f)
    r.packages.append(Package("npm", "evil" + evil, "1.0.0", locations=("/x/" + evil,),
                              layer=L2, licenses=(evil,)))
    r.layers[2] = dataclasses.replace(r.layers[2], created_by="RUN " + evil)
    r.image = dataclasses.replace(r.image, name="evil/" + evil)
    r.facts["elf"].append({"path": "/bin/" + evil, "relro": evil})
    r.warnings.append(ScanWarning("bad " + evil, path="/w/" + evil))
    return r


def minimal_report() -> Report:
    """A directory scan: no image digest, no layers, no OS, nothing found."""
    return Report(tool={"name": "imgscan", "version": "0.1.0"},
                  image=ImageSummary(name="/srv/rootfs", source="dir"))


def test_fixture_is_a_valid_report() -> None:
    validate_report(minimal_report().to_dict())
    validate_report(make_report().to_dict())
    assert {p.purl.split("/")[0] for p in make_report().packages} == {
        "pkg:deb", "pkg:pypi", "pkg:npm", "pkg:golang"}
