"""Every built-in secret rule against a realistic positive and a near-miss negative, plus the
rule loader's validation: schema errors name the file, the rule and the field.

The cases live in tests/data/secret_rule_cases.toml with synthetic values generated here.
"""

from __future__ import annotations

import json
import random
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest

from imgscan.errors import UsageError
from imgscan.model import Severity
from imgscan.secrets.engine import SecretScanner
from imgscan.secrets.rules import RuleError, load_rules, rules_dir

DATA = Path(__file__).parent / "data" / "secret_rule_cases.toml"
CASES = tomllib.loads(DATA.read_text(encoding="utf-8"))["case"]

_ALPHABETS = {
    "alnum": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    "alpha": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "hex": "0123456789abcdef",
    "digits": "0123456789",
    "b64": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    "b64url": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
    "base32": "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
    "upalnum": "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    "bech32": "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L",
}
_GEN = re.compile("\u2039([a-z0-9]+)(?::(\\d+))?\u203a")  # the angle quotes of the data file


def expand(template: str, seed: str) -> str:
    """Replace each generator (angle-quoted kind:N) with deterministic random text; the
    seed is the case's identity, so a value never changes between runs."""
    rng = random.Random(seed)

    def one(m: re.Match[str]) -> str:
        kind, n = m.group(1), int(m.group(2) or 0)
        if kind == "uuid":
            h = "".join(rng.choice(_ALPHABETS["hex"]) for _ in range(32))
            return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        if kind in ("pem", "pemj"):
            lines = ["".join(rng.choice(_ALPHABETS["b64"]) for _ in range(64)) for _ in range(n)]
            return ("\\n" if kind == "pemj" else "\n").join(lines)
        return "".join(rng.choice(_ALPHABETS[kind]) for _ in range(n))

    return _GEN.sub(one, template)


def split_secret(text: str) -> tuple[str, str | None]:
    """Text without the «» markers, and the marked secret."""
    m = re.search("«(.*?)»", text, re.S)
    if not m:
        return text, None
    return text.replace("«", "").replace("»", ""), m.group(1)


@pytest.fixture(scope="module")
def scanner() -> SecretScanner:
    return SecretScanner(load_rules())


def _case_id(c: dict) -> str:
    return c["rule"]


def _medium_plus(matches):
    return [m for m in matches if m.severity >= Severity.MEDIUM]


def test_every_rule_has_a_case() -> None:
    rules = {r.id for r in load_rules().rules}
    covered = {c["rule"] for c in CASES}
    assert rules - covered == set(), "rules without a positive/negative case"
    assert covered - rules == set(), "cases for rules that do not exist"
    assert len(rules) >= 50


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_positive(case: dict, scanner: SecretScanner) -> None:
    seed = case["rule"] + case["positive"][:40]
    text, secret = split_secret(expand(case["positive"], seed))
    assert secret, "positive case must mark its secret"
    path = case.get("path", "srv/app/settings.txt")
    found = _medium_plus(scanner.scan_bytes(text.encode(), path))
    assert [(m.rule_id, m.secret.decode()) for m in found] == [(case["rule"], secret)]
    rule = scanner.ruleset.by_id(case["rule"])
    assert rule is not None and found[0].severity == rule.severity
    # the evidence never carries the secret
    assert secret not in found[0].evidence()
    assert secret.strip()[:4] in found[0].evidence()


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_negative(case: dict, scanner: SecretScanner) -> None:
    seed = case["rule"] + case["negative"][:40]
    text, _ = split_secret(expand(case["negative"], seed))
    path = case.get("negative_path", case.get("path", "srv/app/settings.txt"))
    found = _medium_plus(scanner.scan_bytes(text.encode(), path))
    assert [m.rule_id for m in found] == []


@pytest.mark.parametrize(
    ("make", "rule"),
    [
        # a key of another vendor that even carries OpenAI's T3BlbkFJ marker is still theirs
        (lambda r: "sk-ant-api03-" + r(40) + "T3BlbkFJ" + r(45) + "AA", "anthropic-api-key"),
        (lambda r: "sk-ant-admin01-" + r(90) + "AA", "anthropic-api-key"),
        (lambda r: "sk-or-v1-" + "".join(random.Random(5).choices("0123456789abcdef", k=64)),
         "openrouter-api-key"),
        (lambda r: "sk-or-v1-" + r(20) + "T3BlbkFJ" + r(30), None),  # not OpenRouter's shape
        (lambda r: "sk-proj-" + r(40) + "T3BlbkFJ" + r(40), "openai-api-key"),
    ],
)
@pytest.mark.parametrize("var", ["OPENAI_API_KEY", "LLM_KEY"])
def test_sk_keys_of_other_vendors_are_not_openai_keys(make, rule: str | None, var: str,
                                                       scanner: SecretScanner) -> None:
    """OpenAI-compatible clients take Anthropic and OpenRouter keys in OPENAI_API_KEY; the
    key's own shape decides whose it is (synthetic keys, made here)."""
    rng = random.Random(var)

    def r(n: int) -> str:
        return "".join(rng.choices(_ALPHABETS["alnum"], k=n))

    key = make(r)
    found = scanner.scan_bytes(f"{var}={key}\n".encode(), "srv/app/.env")
    rules = {m.rule_id for m in found if m.secret.decode() == key}
    assert "openai-api-key" not in rules or rule == "openai-api-key"
    if rule is not None:
        assert rules == {rule}


_PATH_RULES = {r.id for r in load_rules().rules if r.paths}


@pytest.mark.parametrize(
    "case", [c for c in CASES if "negative_path" in c and c["rule"] in _PATH_RULES],
    ids=_case_id,
)
def test_positive_text_outside_its_paths(case: dict, scanner: SecretScanner) -> None:
    """Path-restricted rules (npmrc, docker config) stay quiet elsewhere."""
    rule = scanner.ruleset.by_id(case["rule"])
    assert rule is not None and rule.paths
    text, _ = split_secret(expand(case["positive"], case["rule"]))
    found = scanner.scan_bytes(text.encode(), case["negative_path"])
    assert case["rule"] not in [m.rule_id for m in found]


# ---------------------------------------------------------------------------- loading


def test_builtin_files_validate_against_schema() -> None:
    """The shipped files pass the published schema with an independent validator run."""
    schema = json.loads((rules_dir() / "schema" / "secret-rules.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    files = sorted((rules_dir() / "secrets").glob("*.toml"))
    assert len(files) >= 8
    for f in files:
        jsonschema.validate(tomllib.loads(f.read_text()), schema,
                            cls=jsonschema.Draft202012Validator)


def _write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.write_text(text)
    return p


GOOD = '''
[[rules]]
id = "acme-token"
title = "ACME internal token"
severity = "high"
regex = \'\'\'\\b(?P<secret>acme_[a-z0-9]{24})\\b\'\'\'
keywords = ["acme_"]
'''


def test_user_rule_dir_adds_rules(tmp_path: Path) -> None:
    _write(tmp_path, "acme.toml", GOOD)
    rs = load_rules([tmp_path])
    assert rs.by_id("acme-token") is not None
    assert rs.digest != load_rules().digest
    m = SecretScanner(rs).scan_bytes(b"x = acme_" + b"k3" * 12 + b"\n")
    assert [x.rule_id for x in m] == ["acme-token"]


@pytest.mark.parametrize(
    ("text", "rule", "field"),
    [
        (GOOD.replace('severity = "high"', 'severity = "urgent"'), "acme-token", "severity"),
        (GOOD.replace('keywords = ["acme_"]\n', ""), "acme-token", "keywords"),
        (GOOD.replace('id = "acme-token"', 'id = "Acme Token"'), "Acme Token", "id"),
        (GOOD + 'colour = "red"\n', "acme-token", "colour"),
        (GOOD.replace("(?P<secret>", "("), "acme-token", "regex"),
        (GOOD.replace("{24})", "{24}"), "acme-token", "regex"),
        (GOOD.replace('title = "ACME internal token"\n', ""), "acme-token", "title"),
        (GOOD + "entropy = 9.5\n", "acme-token", "entropy"),
    ],
)
def test_bad_rule_file_names_file_rule_field(tmp_path: Path, text: str, rule: str,
                                             field: str) -> None:
    f = _write(tmp_path, "bad.toml", text)
    with pytest.raises(RuleError) as ei:
        load_rules([tmp_path])
    err = ei.value
    assert isinstance(err, UsageError) and err.exit_code == 2
    assert err.file == str(f) and str(f) in str(err)
    assert err.rule == rule and repr(rule) in str(err)
    assert err.field == field and repr(field) in str(err)


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    f = _write(tmp_path, "broken.toml", "[[rules]\nid = 1\n")
    with pytest.raises(RuleError, match=re.escape(str(f)) + ".*not valid TOML"):
        load_rules([tmp_path])


def test_schema_error_does_not_echo_values(tmp_path: Path) -> None:
    """A user might paste a secret into the wrong field; the error must not repeat it."""
    secret = "ghp_" + "Zq8" * 12
    _write(tmp_path, "leak.toml", GOOD.replace('severity = "high"', f'severity = "{secret}"'))
    with pytest.raises(RuleError) as ei:
        load_rules([tmp_path])
    assert secret not in str(ei.value)


def test_disable_rule_and_unknown_id() -> None:
    rs = load_rules(disabled=["jwt", "aws-access-key-pair"])
    assert rs.by_id("jwt") is None
    assert rs.by_id("github-pat") is not None
    assert rs.digest != load_rules().digest
    with pytest.raises(RuleError, match="no-such-rule"):
        load_rules(disabled=["no-such-rule"])


def test_user_rule_replaces_builtin(tmp_path: Path) -> None:
    _write(tmp_path, "jwt.toml", GOOD.replace("acme-token", "jwt").replace(
        'severity = "high"', 'severity = "low"'))
    rs = load_rules([tmp_path])
    jwt = rs.by_id("jwt")
    assert jwt is not None and jwt.severity == Severity.LOW
    assert [r.id for r in rs.rules].count("jwt") == 1


def test_listing_has_every_rule() -> None:
    rs = load_rules()
    rows = rs.listing()
    assert [r["id"] for r in rows] == [r.id for r in rs.rules]
    assert all(r["severity"] in {s.value for s in Severity} for r in rows)
