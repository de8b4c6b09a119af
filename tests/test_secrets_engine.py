"""The secret engine under stress: chunk borders, binaries, redaction, invalid UTF-8, huge
lines, hostile rules, pairs, placeholders, real keys made by openssl/ssh-keygen/gpg, the
image config and the analyzer contract."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest

from analyzerharness import LocalFileInput, run_analyzer
from imgscan.analyzers.interface import FileInfo, FileKind, ScanOptions
from imgscan.analyzers.secrets import SecretsAnalyzer, SecretsConfigAnalyzer, scan_config
from imgscan.model import LayerRef, Severity, to_jsonable
from imgscan.secrets.engine import MAX_MATCHES_PER_FILE, SecretScanner, shannon_entropy
from imgscan.secrets.redact import fingerprint, redact
from imgscan.secrets.rules import RuleError, load_rules

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
B64 = ALNUM + "+/"


def rnd(n: int, alphabet: str = ALNUM, seed: int = 1) -> str:
    r = random.Random(seed * 7919 + n)
    return "".join(r.choice(alphabet) for _ in range(n))


GH = "ghp_" + rnd(36, seed=3)
AKID = "AKIA" + rnd(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", seed=4)
AWS_SK = rnd(40, B64, seed=5)


@pytest.fixture(scope="module")
def rules():
    return load_rules()


@pytest.fixture(scope="module")
def scanner(rules) -> SecretScanner:
    return SecretScanner(rules)


def filler(n: int, seed: int = 0) -> bytes:
    """Prose-like text without keywords, in lines of 60-100 characters."""
    r = random.Random(seed)
    words = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit",
             "sed", "do", "eiusmod", "tempor", "incididunt", "labore", "magna", "aliqua"]
    out = bytearray()
    line = 0
    while len(out) < n:
        w = r.choice(words)
        out += w.encode()
        line += len(w) + 1
        if line > 60 + r.randrange(40):
            out += b"\n"
            line = 0
        else:
            out += b" "
    return bytes(out[:n])


# ---------------------------------------------------------------------------- chunks


@pytest.mark.parametrize("delta", [-60, -41, -40, -39, -20, -4, -1, 0, 1, 3, 10])
def test_secret_straddling_chunk_border_found_once(rules, delta: int) -> None:
    chunk = 4096
    sc = SecretScanner(rules, chunk_size=chunk)
    pos = chunk + delta
    data = filler(pos, seed=delta & 0xFF) + f" token {GH} end\n".encode() + filler(3 * chunk)
    secret_at = data.index(GH.encode())
    matches = sc.scan_stream(io.BytesIO(data), "app/x.txt")
    assert [(m.rule_id, m.start) for m in matches] == [("github-pat", secret_at)]
    m = matches[0]
    assert m.line == data.count(b"\n", 0, secret_at) + 1
    assert m.column == secret_at - (data.rfind(b"\n", 0, secret_at) + 1) + 1


def test_private_key_straddling_many_chunks(rules) -> None:
    """A 3 KB PEM body crossing two 4 KB chunk borders is one finding."""
    sc = SecretScanner(rules, chunk_size=4096)
    body = "\n".join(rnd(64, B64, seed=i) for i in range(48)) + "\n"
    pem = f"-----BEGIN RSA PRIVATE KEY-----\n{body}-----END RSA PRIVATE KEY-----\n"
    data = filler(3000) + b"\n" + pem.encode() + filler(9000)
    matches = sc.scan_stream(io.BytesIO(data), "etc/k.pem")
    assert [m.rule_id for m in matches] == ["private-key-rsa"]
    assert matches[0].secret == body.encode()


def test_many_secrets_across_chunks_each_once(rules) -> None:
    sc = SecretScanner(rules, chunk_size=4096)
    toks = ["ghp_" + rnd(36, seed=100 + i) for i in range(40)]
    parts = []
    for i, t in enumerate(toks):
        parts.append(filler(500 + 37 * i, seed=i))
        parts.append(f"\nGH={t}\n".encode())
    data = b"".join(parts)
    found = sc.scan_stream(io.BytesIO(data), "a.txt")
    assert sorted(m.secret.decode() for m in found) == sorted(toks)


BACKENDS = ["hyperscan", "pyahocorasick"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_prefilter_backends_agree(rules, backend: str) -> None:
    """Both keyword backends report the same hits, case-insensitively and overlapping,
    compared with a plain find() over the lower-cased text."""
    from imgscan.secrets.prefilter import build

    kws: dict[str, list[int]] = {}
    for i, r in enumerate(rules.rules):
        for k in r.keywords:
            kws.setdefault(k, []).append(i)
    rng = random.Random(5)
    parts = []
    for k in sorted(kws) * 3:
        parts.append(filler(rng.randrange(5, 80), seed=rng.randrange(99)))
        parts.append("".join(c.upper() if rng.random() < 0.5 else c for c in k).encode())
    buf = b"".join(parts) + b"\xff\xfe\x00"
    low = buf.lower()
    want = set()
    for k in kws:
        kb = k.encode()
        i = low.find(kb)
        while i >= 0:
            want.add((i, i + len(kb)))
            i = low.find(kb, i + 1)
    pf = build(kws, backend)
    assert pf is not None and pf.backend == backend
    got = pf.hits(buf)
    assert {(s, e) for s, e, _ in got} == want
    assert all(tuple(kws[buf[s:e].lower().decode()]) == idx for s, e, idx in got)


@pytest.mark.parametrize("backend", BACKENDS)
def test_straddle_with_each_backend(rules, backend: str) -> None:
    sc = SecretScanner(rules, chunk_size=4096, backend=backend)
    data = filler(4096 - 20) + f" {GH} ".encode() + filler(5000)
    assert [m.start for m in sc.scan_stream(io.BytesIO(data))] == [data.index(b"ghp_")]


# ---------------------------------------------------------------------------- content kinds


def test_binary_skipped_unless_asked(rules) -> None:
    data = b"\x7fELF\x02\x01\x01\0\0\0" + f" {GH} ".encode() + bytes(range(256)) * 4
    assert SecretScanner(rules).scan_bytes(data, "usr/bin/tool") == []
    found = SecretScanner(rules, scan_binaries=True).scan_bytes(data, "usr/bin/tool")
    assert [m.rule_id for m in found] == ["github-pat"]


def test_invalid_utf8_is_scanned(scanner) -> None:
    data = b"\xff\xfe\xc3(\xa0\xa1 caf\xe9 " + f"key={GH}".encode() + b" \xed\xa0\x80\n"
    found = scanner.scan_bytes(data, "srv/latin1.conf")
    assert [m.rule_id for m in found] == ["github-pat"]
    assert found[0].column == data.index(b"ghp_") + 1
    assert GH not in found[0].evidence()


def test_crlf_and_no_trailing_newline(scanner) -> None:
    data = f"a=1\r\nb=2\r\nGITHUB={GH}".encode()
    (m,) = scanner.scan_bytes(data, "x.env")
    assert (m.line, m.column) == (3, 8)


# ---------------------------------------------------------------------------- redaction


def test_redact_format() -> None:
    assert redact(AKID) == f"{AKID[:4]}****…(20 chars)"
    assert redact("hunter2!") == "hu****…(8 chars)"  # short values show a quarter
    assert redact("") == "****…(0 chars)"
    assert fingerprint(GH) != fingerprint(GH + "x") and GH not in fingerprint(GH)


def test_findings_never_contain_the_secret_unless_shown(tmp_path: Path) -> None:
    secret_files = {
        "app/.env": f"GITHUB_TOKEN={GH}\nDB_PASSWORD={rnd(20, seed=9)}\n",
        "root/.aws/credentials": f"[default]\naws_access_key_id = {AKID}\n"
                                 f"aws_secret_access_key = {AWS_SK}\n",
    }
    for rel, text in secret_files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    res = run_analyzer(SecretsAnalyzer(), str(tmp_path))
    dump = json.dumps(to_jsonable(res.findings)) + json.dumps(to_jsonable(res.warnings))
    assert len(res.findings) == 3
    for secret in (GH, AKID, AWS_SK, rnd(20, seed=9)):
        assert secret not in dump
    for f in res.findings:
        assert len(f.properties["fingerprint"]) == 64 and f.id
    shown = run_analyzer(SecretsAnalyzer(ScanOptions(show_secrets=True)), str(tmp_path))
    dump = json.dumps(to_jsonable(shown.findings))
    assert GH in dump and AWS_SK in dump
    # ids do not depend on whether the evidence is shown
    assert sorted(f.id for f in shown.findings) == sorted(f.id for f in res.findings)


def test_match_str_and_repr_are_redacted(scanner) -> None:
    (m,) = scanner.scan_bytes(f"x {GH}\n".encode())
    assert GH not in str(m) and GH not in repr(m)


# ---------------------------------------------------------------------------- size and time


class _Generated(io.RawIOBase):
    """A stream of ``size`` bytes made on the fly (nothing held): one single line of
    keyword-laden text with one real token planted at ``plant``."""

    def __init__(self, size: int, plant: int, token: bytes) -> None:
        self.size, self.pos, self.plant, self.token = size, 0, plant, token
        unit = b"the api token_format of this password-less record is fine; "
        self.block = (unit + filler(4096 - len(unit)).replace(b"\n", b" "))[:4096]

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        n = min(len(b), self.size - self.pos)
        if n <= 0:
            return 0
        out = bytearray()
        start = self.pos
        while len(out) < n:
            off = (start + len(out)) % len(self.block)
            out += self.block[off : off + n - len(out)]
        # plant the token where it belongs in this slice
        for i, c in enumerate(self.token):
            k = self.plant + i - start
            if 0 <= k < n:
                out[k] = c
        b[:n] = out
        self.pos += n
        return n


def test_100mb_single_line_bounded_memory(scanner) -> None:
    size = 100 << 20
    plant = 70 << 20
    token = f" {GH} ".encode()
    stream = io.BufferedReader(_Generated(size, plant, token), buffer_size=1 << 20)
    tracemalloc.start()
    t0 = time.monotonic()
    found = scanner.scan_stream(stream, "var/log/huge.log")
    elapsed = time.monotonic() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [m.rule_id for m in found] == ["github-pat"]
    assert found[0].start == plant + 1 and found[0].line == 1
    assert peak < 24 << 20, f"peak {peak >> 20} MiB"
    assert elapsed < 60


def test_too_many_matches_capped_with_warning(scanner) -> None:
    data = "".join(f"t{i}=ghp_{rnd(36, seed=i)}\n" for i in range(MAX_MATCHES_PER_FILE + 50))
    warnings: list[str] = []
    found = scanner.scan_bytes(data.encode(), "dump.txt", warnings)
    assert len(found) == MAX_MATCHES_PER_FILE
    assert warnings and "not scanned" in warnings[0] and "ghp_" not in warnings[0]


def _user_rule(tmp_path: Path, regex: str, keyword: str = "zz") -> Path:
    (tmp_path / "user.toml").write_text(
        "[[rules]]\nid = \"user-rule\"\ntitle = \"user rule\"\nseverity = \"high\"\n"
        f"regex = '''{regex}'''\nkeywords = [\"{keyword}\"]\n"
    )
    return tmp_path


@pytest.mark.parametrize("regex", [
    r"zz(?P<secret>(a+)+)$",
    r"zz(?P<secret>(\w+\s?)*)!",
    r"zz(?P<secret>(a|aa)*)b",
    r"zz(?P<secret>\w*\w*\w*)!",
    r"zz\s*'?\s*(?P<secret>x)",
])
def test_catastrophic_user_rule_refused(tmp_path: Path, regex: str) -> None:
    with pytest.raises(RuleError) as ei:
        load_rules([_user_rule(tmp_path, regex)])
    assert ei.value.rule == "user-rule" and ei.value.field == "regex"
    assert "refused" in str(ei.value)


def test_slow_but_accepted_user_rule_is_bounded_by_windows(tmp_path: Path) -> None:
    """A polynomial rule that passes the static check only ever sees a window, not the
    1 MB line it is run on."""
    rs = load_rules([_user_rule(tmp_path, r"zz[a-z]{0,900}q(?P<secret>[a-z]{0,900}!)")],
                    builtin=False)
    data = (b"zz" + b"a" * 998) * 1000
    t0 = time.monotonic()
    assert SecretScanner(rs).scan_bytes(data) == []
    assert time.monotonic() - t0 < 20


# ---------------------------------------------------------------------------- semantics


def test_aws_pair_reported_as_one(scanner) -> None:
    text = f"[prod]\naws_access_key_id = {AKID}\naws_secret_access_key = {AWS_SK}\n"
    (m,) = scanner.scan_bytes(text.encode(), "root/.aws/credentials")
    assert m.rule_id == "aws-access-key-pair" and m.severity == Severity.CRITICAL
    ev = m.evidence()
    assert redact(AKID) in ev and redact(AWS_SK) in ev and AWS_SK not in ev
    far = f"aws_access_key_id = {AKID}\n" + "#\n" * 1500 + f"aws_secret_access_key = {AWS_SK}\n"
    ids = sorted(x.rule_id for x in scanner.scan_bytes(far.encode(), "x"))
    assert ids == ["aws-access-key-id", "aws-secret-access-key"]


def test_aws_documentation_keys_are_info(scanner) -> None:
    text = ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n")
    found = scanner.scan_bytes(text.encode(), "root/.aws/credentials")
    assert found and all(m.severity == Severity.INFO for m in found)
    assert all("documentation" in m.reason for m in found)


@pytest.mark.parametrize("value", [
    "${DB_PASSWORD}", "{{ db_password }}", "%(password)s", "<your-password>", "changeme123",
    "xxxxxxxxxxxx", "$DB_PASSWORD", "{password}", "@DB_PASSWORD@",
])
def test_placeholders_not_reported(scanner, value: str) -> None:
    for text in (f'password = "{value}"', f"DB_PASSWORD={value}", f"secret: '{value}'"):
        found = scanner.scan_bytes(text.encode(), "srv/app/config.ini")
        assert [m for m in found if m.severity >= Severity.MEDIUM] == []


def test_packaged_test_keys_are_info_with_reason(scanner) -> None:
    body = "\n".join(rnd(64, B64, seed=50 + i) for i in range(20)) + "\n"
    pem = f"-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\n".encode()
    inpkg = scanner.scan_bytes(pem, "usr/lib/python3/dist-packages/urllib3/tests/key.pem")
    assert [(m.rule_id, m.severity) for m in inpkg] == [("private-key-pkcs8", Severity.INFO)]
    assert "test" in inpkg[0].reason
    app = scanner.scan_bytes(pem, "srv/app/tests/key.pem")  # not a package: a real finding
    assert [(m.rule_id, m.severity) for m in app] == [("private-key-pkcs8", Severity.CRITICAL)]


def test_jwt_inside_kubeconfig_is_one_finding(scanner) -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJ" + rnd(60, seed=8) + "." + rnd(43, seed=9)
    text = f"users:\n- name: sa\n  user:\n    token: {jwt}\n"
    found = scanner.scan_bytes(text.encode(), "root/.kube/config")
    assert [m.rule_id for m in found] == ["kubeconfig-token"]


def test_entropy() -> None:
    assert shannon_entropy(b"aaaa") == 0
    assert shannon_entropy(b"abcd") == 2
    assert shannon_entropy(rnd(4096, B64).encode()) > 5.9


# ---------------------------------------------------------------------------- real keys


def _run(*cmd: str, cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def real_keys(tmp_path_factory) -> Path:
    """Throwaway keys of every kind, made by the real tools (never committed)."""
    d = tmp_path_factory.mktemp("keys")
    _run("openssl", "genrsa", "-traditional", "-out", "rsa.pem", "2048", cwd=d)
    _run("openssl", "genrsa", "-traditional", "-aes128", "-passout", "pass:pw", "-out",
         "rsa-enc.pem", "2048", cwd=d)
    _run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec.pem",
         cwd=d)
    _run("openssl", "dsaparam", "-genkey", "-noout", "-out", "dsa8.pem", "1024", cwd=d)
    _run("openssl", "pkey", "-in", "dsa8.pem", "-traditional", "-out", "dsa.pem", cwd=d)
    _run("openssl", "genpkey", "-algorithm", "ed25519", "-out", "pkcs8.pem", cwd=d)
    _run("openssl", "genpkey", "-algorithm", "ed25519", "-aes256", "-pass", "pass:pw",
         "-out", "pkcs8-enc.pem", cwd=d)
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "id_ed25519", cwd=d)
    _run("ssh-keygen", "-q", "-t", "ecdsa", "-N", "pw", "-f", "id_ecdsa", cwd=d)
    # public material that must stay quiet
    _run("openssl", "pkey", "-in", "pkcs8.pem", "-pubout", "-out", "pub.pem", cwd=d)
    _run("openssl", "req", "-x509", "-key", "rsa.pem", "-subj", "/CN=t", "-days", "1",
         "-out", "cert.pem", cwd=d)
    home = d / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
           "--passphrase", ""]
    _run(*gpg, "--quick-gen-key", "t <t@t.invalid>", "ed25519", "sign", "1d", cwd=d)
    _run(*gpg, "--armor", "--export-secret-keys", "--output", "sec.asc", cwd=d)
    _run(*gpg, "--armor", "--export", "--output", "pub.asc", cwd=d)
    return d


@pytest.mark.parametrize(("name", "rule"), [
    ("rsa.pem", "private-key-rsa"), ("rsa-enc.pem", "private-key-rsa"),
    ("ec.pem", "private-key-ec"), ("dsa.pem", "private-key-dsa"),
    ("pkcs8.pem", "private-key-pkcs8"), ("pkcs8-enc.pem", "private-key-pkcs8-encrypted"),
    ("id_ed25519", "private-key-openssh"), ("id_ecdsa", "private-key-openssh"),
    ("sec.asc", "private-key-pgp"),
])
def test_real_private_keys_found(real_keys: Path, scanner, name: str, rule: str) -> None:
    data = (real_keys / name).read_bytes()
    found = scanner.scan_bytes(data, f"srv/{name}")
    assert [(m.rule_id, m.severity >= Severity.HIGH) for m in found] == [(rule, True)]


@pytest.mark.parametrize("name", ["pub.pem", "cert.pem", "id_ed25519.pub", "id_ecdsa.pub",
                                  "pub.asc"])
def test_real_public_material_quiet(real_keys: Path, scanner, name: str) -> None:
    assert scanner.scan_bytes((real_keys / name).read_bytes(), f"srv/{name}") == []


# ---------------------------------------------------------------------------- config


def test_image_config_env_labels_history(rules) -> None:
    pw = rnd(20, seed=77)
    layers = [LayerRef(0, "sha256:" + "a" * 64, "ADD rootfs"),
              LayerRef(1, "sha256:" + "b" * 64, "RUN build")]
    config = {
        "config": {
            "Env": ["PATH=/usr/bin", f"GITHUB_TOKEN={GH}", "DB_PASSWORD=${DB_PASSWORD}"],
            "Labels": {"org.opencontainers.image.source": "https://git.corp.internal/app",
                       "deploy.token": AWS_SK + "Zz"},
            "Cmd": ["app", "--db", f"postgres://app:{pw}@db.internal/app"],
        },
        "history": [
            {"created_by": "/bin/sh -c #(nop) ADD file:abc in /"},
            {"created_by": f"/bin/sh -c #(nop)  ENV GITHUB_TOKEN={GH}", "empty_layer": True},
            {"created_by": f"|1 NPM_TOKEN=npm_{rnd(36, seed=2)} /bin/sh -c make"},
        ],
    }
    res = scan_config(config, SecretScanner(rules), layers)
    got = sorted((f.location.config_key, f.rule_id) for f in res.findings)
    assert got == sorted([
        ("Env[1]", "github-pat"),
        ("Labels.deploy.token", "generic-token"),
        ("Cmd", "database-url-password"),
        ("history[1]", "github-pat"),
        ("history[2]", "npm-access-token"),
    ])
    by_key = {f.location.config_key: f for f in res.findings}
    assert by_key["history[2]"].location.layer == layers[1]
    assert by_key["history[1]"].location.layer is None  # empty_layer: no layer of its own
    dump = json.dumps(to_jsonable(res.findings))
    assert GH not in dump and pw not in dump


def test_config_analyzer_on_hostile_config() -> None:
    class View:
        config = {"config": {"Env": [1, None, "X"], "Labels": ["not", "a", "map"]},
                  "history": "nope"}
        layers = ()

    res = SecretsConfigAnalyzer().post_analyze(View(), [], None)  # type: ignore[arg-type]
    assert res.findings == []


# ---------------------------------------------------------------------------- analyzer


def test_analyzer_contract(tmp_path: Path) -> None:
    a = SecretsAnalyzer()
    assert a.name == "secrets" and a.wants_hidden
    assert not a.required(FileInfo("etc/x", FileKind.HARDLINK, size=10, linkname="etc/y"))
    assert not a.required(FileInfo("etc/x", FileKind.SYMLINK, linkname="y"))
    assert not a.required(FileInfo("usr/lib/libc.so.6", FileKind.FILE, size=10))
    assert SecretsAnalyzer(ScanOptions(scan_binaries=True)).required(
        FileInfo("usr/lib/libc.so.6", FileKind.FILE, size=10))
    assert a.required(FileInfo("app/.env", FileKind.FILE, size=10))
    assert a.cache_key().startswith(load_rules().digest)
    assert a.cache_key() != SecretsAnalyzer(ScanOptions(disabled_rules=("jwt",))).cache_key()
    assert a.cache_key() != SecretsAnalyzer(ScanOptions(show_secrets=True)).cache_key()


def test_analyzer_streams_large_files_and_locates(tmp_path: Path) -> None:
    big = tmp_path / "var" / "log" / "big.log"
    big.parent.mkdir(parents=True)
    head = filler(3 << 20)
    big.write_bytes(head + f"\nexport GITHUB_TOKEN={GH}\n".encode())
    res = run_analyzer(SecretsAnalyzer(), str(tmp_path))
    (f,) = res.findings
    assert f.location.path == "/var/log/big.log"
    assert f.location.line == head.count(b"\n") + 2 and f.location.column == 21
    assert f.category == "secret" and f.severity == Severity.CRITICAL
    assert f.evidence == redact(GH)


def test_analyzer_size_cap_warns(tmp_path: Path) -> None:
    p = tmp_path / "big.txt"
    p.write_bytes(b"x" * 5000)
    opts = ScanOptions(extra={"secrets.max_file_size": 4096})
    info = FileInfo("big.txt", FileKind.FILE, size=5000)
    res = SecretsAnalyzer(opts).analyze(LocalFileInput(str(p), info))
    assert res is not None and len(res.warnings) == 1 and "limit" in res.warnings[0].message


def test_analyzer_unreadable_file_warns(tmp_path: Path) -> None:
    info = FileInfo("gone.txt", FileKind.FILE, size=10)
    res = SecretsAnalyzer().analyze(LocalFileInput(str(tmp_path / "gone.txt"), info))
    assert res is not None and res.warnings and not res.findings


def test_analyzer_pickles_without_scanner() -> None:
    import pickle

    a = SecretsAnalyzer(ScanOptions(disabled_rules=("jwt",)))
    a.cache_key()
    b = pickle.loads(pickle.dumps(a))
    assert b._scanner is None and b.cache_key() == a.cache_key()


def test_bad_user_rules_surface_as_usage_error(tmp_path: Path) -> None:
    _user_rule(tmp_path, r"zz(?P<secret>(a+)+)$")
    a = SecretsAnalyzer(ScanOptions(rule_dirs=(str(tmp_path),)))
    with pytest.raises(RuleError):
        a.cache_key()


def test_file_modes_do_not_matter(tmp_path: Path) -> None:
    p = tmp_path / "k"
    p.write_text(f"GITHUB={GH}\n")
    os.chmod(p, 0)
    res = run_analyzer(SecretsAnalyzer(), str(tmp_path))  # root reads it anyway
    assert [f.rule_id for f in res.findings] == (["github-pat"] if os.geteuid() == 0 else [])


def test_evidence_redacts_other_secrets_in_its_context(scanner) -> None:
    """The twilio key rule's match spans back to the word 'twilio'; an auth token between
    them must not appear in the key's evidence."""
    tok = rnd(32, "0123456789abcdef", seed=21)
    key = "SK" + rnd(32, "0123456789abcdef", seed=22)
    text = f"twilio_auth_token = {tok}\nTWILIO_API_KEY: {key}\n"
    found = scanner.scan_bytes(text.encode(), "srv/app/twilio.yml")
    assert sorted(m.rule_id for m in found) == ["twilio-api-key", "twilio-auth-token"]
    for m in found:
        ev = m.evidence()
        assert tok not in ev and key not in ev
    (k,) = [m for m in found if m.rule_id == "twilio-api-key"]
    assert redact(tok) in k.evidence() or "twilio" not in k.evidence()[:60]
    assert key in k.evidence(show=True)


def test_rule_time_budget_switches_a_rule_off(rules, monkeypatch) -> None:
    import imgscan.secrets.engine as engine

    monkeypatch.setattr(engine, "RULE_TIME_BUDGET", -1.0)
    warnings: list[str] = []
    text = f"a={GH}\n" + "x\n" * 10 + f"b=ghp_{rnd(36, seed=31)}\n"
    found = SecretScanner(rules).scan_bytes(text.encode(), "x", warnings)
    assert len(found) == 1  # the first window ran, then the rule was stopped for this file
    assert any("github-pat" in w and "stopped" in w for w in warnings)
    assert all("ghp_" not in w for w in warnings)


def test_many_dropped_candidates_keep_memory_flat(rules) -> None:
    """Placeholders are dropped, not counted: the per-file state must not grow with them."""
    line = b'password = "changeme-placeholder-value"\n'
    data = line * ((768 << 10) // len(line))
    sc = SecretScanner(rules, chunk_size=64 << 10)
    tracemalloc.start()
    found = sc.scan_stream(io.BytesIO(data), "srv/app.conf")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert found == []
    assert peak < 2 << 20, f"peak {peak / 2**20:.1f} MiB"


def test_env_names_that_describe_a_secret_are_not_secrets():
    """Seen in the secrets benchmark: counters and settings named after tokens fired."""
    from imgscan.secrets.engine import SecretScanner
    from imgscan.secrets.rules import load_rules

    scanner = SecretScanner(load_rules())
    quiet = (b"TOKEN_COUNT_226=export-67139\nPASSWORD_MIN_LENGTH=12345678\n"
             b"SECRET_FILE=/run/secrets/db\nTOKEN_TTL=3600s-maximum\n")
    assert [m for m in scanner.scan_bytes(quiet, "app/.env")
            if m.rule_id == "generic-env-secret"] == []
    loud = b"SECRET_KEY_BASE=8f3kLz9Qw2Xe7Rt5Yu1Io0PaSdFgHjKl\n"
    assert [m.rule_id for m in scanner.scan_bytes(loud, "app/.env")] == ["generic-env-secret"]
