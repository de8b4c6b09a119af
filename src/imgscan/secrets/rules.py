"""Secret rules: find the rule files, validate them against the schema, compile them.

Rule files are TOML (``rules/secrets/*.toml``), validated at load time against
``rules/schema/secret-rules.schema.json``. A bad file is a ``RuleError`` (exit 2) that names
the file, the rule and the field, so a user with fifty custom rules can find the broken one.
Regexes are checked for catastrophic backtracking (``redos.py``) before they are compiled.

Directories load in order (built-ins first, then each ``--rules DIR``); a later rule with the
same id replaces an earlier one, which is how a user tunes a built-in rule.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from imgscan.errors import UsageError
from imgscan.model import Severity
from imgscan.secrets.redos import ReDoSError, compile_checked
from imgscan.secrets.rulecache import ENGINE_VERSION, LazyPattern, cached, content_key, rules_dir

DEFAULT_WINDOW_BEFORE = 256
DEFAULT_WINDOW_AFTER = 512


class RuleError(UsageError):
    """A rule file is unusable; the message names the file, the rule and the field."""

    def __init__(self, file: str, message: str, rule: str = "", field: str = "") -> None:
        self.file, self.rule, self.field = file, rule, field
        where = [file]
        if rule:
            where.append(f"rule {rule!r}")
        if field:
            where.append(f"field {field!r}")
        super().__init__(": ".join(where) + ": " + message)


def schema_path() -> Path:
    return rules_dir() / "schema" / "secret-rules.schema.json"


@cache
def _validator() -> Any:
    import jsonschema

    schema = json.loads(schema_path().read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


# ---------------------------------------------------------------------------- globs


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Path globs against image paths without the leading slash: ``*`` stays within one
    directory, ``**/`` spans any number of them, ``?`` is one character."""
    pat = pattern.lstrip("/")
    out = []
    i = 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pat.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pat.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pat[i + 1 : j].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


@dataclass(frozen=True)
class PathSet:
    """A set of globs, matched as one alternation."""

    globs: tuple[str, ...] = ()
    _rx: re.Pattern[str] | None = None

    @classmethod
    def of(cls, globs: Iterable[str]) -> PathSet:
        globs = tuple(globs)
        if not globs:
            return cls()
        rx = re.compile("|".join(f"(?:{glob_to_regex(g).pattern})" for g in globs))
        return cls(globs, rx)

    def matches(self, path: str) -> bool:
        rx = self._rx
        if rx is None:
            if not self.globs:
                return False
            rx = re.compile("|".join(f"(?:{glob_to_regex(g).pattern})" for g in self.globs))
            object.__setattr__(self, "_rx", rx)  # compiled on first use after unpickling
        return rx.match(path.lstrip("/")) is not None

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its globs: a cached rule set compiles only what a scan uses."""
        return (PathSet, (self.globs,))

    def __bool__(self) -> bool:
        return bool(self.globs)


# ---------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Allowlist:
    """Matches to drop: exact secret values, regexes over the secret, or file paths."""

    values: frozenset[bytes] = frozenset()
    regexes: tuple[re.Pattern[bytes], ...] = ()
    paths: PathSet = field(default_factory=PathSet)

    def allows_value(self, secret: bytes) -> bool:
        return secret in self.values or any(r.search(secret) for r in self.regexes)


@dataclass(frozen=True)
class Downgrade:
    """Matches to keep at info, with a reason (documentation values, package test data)."""

    reason: str
    values: frozenset[bytes] = frozenset()
    regexes: tuple[re.Pattern[bytes], ...] = ()
    paths: PathSet = field(default_factory=PathSet)
    rules: frozenset[str] = frozenset()  # empty: every rule

    def applies(self, rule_id: str, secret: bytes, path: str) -> bool:
        if self.rules and rule_id not in self.rules:
            return False
        if secret in self.values or any(r.search(secret) for r in self.regexes):
            return True
        return bool(path) and self.paths.matches(path)


@dataclass(frozen=True)
class Pair:
    with_rule: str
    id: str
    title: str
    severity: Severity
    distance: int = 1024


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: Severity
    regex: re.Pattern[bytes]
    keywords: tuple[str, ...]
    source: str = ""
    description: str = ""
    entropy: float | None = None
    min_length: int = 1
    paths: PathSet = field(default_factory=PathSet)
    exclude_paths: PathSet = field(default_factory=PathSet)
    window_before: int = DEFAULT_WINDOW_BEFORE
    window_after: int = DEFAULT_WINDOW_AFTER
    multiline: bool = False
    allowlist: Allowlist = field(default_factory=Allowlist)
    pair: Pair | None = None
    tags: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def wants_path(self, path: str) -> bool:
        if not path:
            return True
        if self.paths and not self.paths.matches(path):
            return False
        return not self.exclude_paths.matches(path)


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    allowlist: Allowlist = field(default_factory=Allowlist)
    downgrades: tuple[Downgrade, ...] = ()
    disabled: frozenset[str] = frozenset()
    files: tuple[str, ...] = ()
    _digest: str = ""

    @property
    def digest(self) -> str:
        """Changes whenever any rule, allowlist, downgrade or the engine changes: the per-layer
        cache key of the secrets analyzer."""
        return self._digest

    def by_id(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def __len__(self) -> int:
        return len(self.rules)

    def listing(self) -> list[dict[str, Any]]:
        """What ``imgscan rules`` prints: one row per loaded rule, in load order."""
        return [
            {"id": r.id, "severity": r.severity.value, "title": r.title,
             "keywords": list(r.keywords), "source": r.source}
            for r in self.rules
        ]


# ---------------------------------------------------------------------------- loading


def _schema_errors(doc: dict[str, Any], file: str) -> None:
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(map(str, e.path)))
    if not errors:
        return
    msgs = []
    first: tuple[str, str] | None = None
    for err in errors[:10]:
        path = list(err.absolute_path)
        rule = ""
        fld = ".".join(str(p) for p in path)
        if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):
            entry = doc["rules"][path[1]]
            rid = entry.get("id") if isinstance(entry, dict) else None
            rule = str(rid) if isinstance(rid, str) else f"#{path[1] + 1}"
            fld = ".".join(str(p) for p in path[2:])
        if err.validator == "required":
            m = re.match(r"'([^']+)'", err.message)
            missing = m.group(1) if m else "?"
            fld = f"{fld}.{missing}" if fld else missing
        elif err.validator == "additionalProperties":
            m = re.search(r"\('([^']+)'", err.message)
            extra = m.group(1) if m else "?"
            fld = f"{fld}.{extra}" if fld else extra
        # never echo the offending value: a rule value might be a pasted secret
        reason = _describe(err)
        msgs.append((rule, fld, reason))
        first = first or (rule, fld)
    rule, fld = first or ("", "")
    detail = "; ".join(
        (f"rule {r!r} " if r else "") + (f"field {f!r}: " if f else "") + m for r, f, m in msgs
    )
    raise RuleError(file, f"schema violation: {detail}" if len(msgs) > 1 else msgs[0][2],
                    rule=rule, field=fld)


def _describe(err: Any) -> str:
    v = err.validator
    if v == "required":
        return "is required"
    if v == "additionalProperties":
        return "is not a known field"
    if v == "type":
        return f"must be of type {err.validator_value}"
    if v == "enum":
        return "must be one of " + ", ".join(map(str, err.validator_value))
    if v == "pattern":
        return f"must match {err.validator_value}"
    if v in ("minItems", "minLength", "maxLength", "minimum", "maximum"):
        return f"violates {v} {err.validator_value}"
    return f"is invalid ({v})"


def _compile(rx: str, file: str, rule: str, fld: str) -> re.Pattern[bytes]:
    try:
        # checked and compiled now (a bad regex is an error at load time); cached rule sets
        # carry the source only and compile on first use
        return LazyPattern(rx, compile_checked(rx))  # type: ignore[return-value]
    except ReDoSError as e:
        raise RuleError(file, f"refused: {e}", rule=rule, field=fld) from None
    except (re.error, OverflowError, RecursionError) as e:
        raise RuleError(file, f"invalid regex: {e}", rule=rule, field=fld) from None


def _allowlist(d: dict[str, Any] | None, file: str, rule: str, prefix: str) -> Allowlist:
    if not d:
        return Allowlist()
    return Allowlist(
        values=frozenset(v.encode() for v in d.get("values", ())),
        regexes=tuple(_compile(r, file, rule, f"{prefix}.regexes[{i}]")
                      for i, r in enumerate(d.get("regexes", ()))),
        paths=PathSet.of(d.get("paths", ())),
    )


def _rule(d: dict[str, Any], file: str) -> Rule:
    rid = d["id"]
    regex = _compile(d["regex"], file, rid, "regex")
    if "secret" not in regex.groupindex:
        raise RuleError(file, "the regex has no named group 'secret'", rule=rid, field="regex")
    pair = None
    if "pair" in d:
        p = d["pair"]
        pair = Pair(p["with"], p["id"], p["title"], Severity(p["severity"]),
                    p.get("distance", 1024))
    return Rule(
        id=rid, title=d["title"], severity=Severity(d["severity"]), regex=regex,
        keywords=tuple(sorted({k.lower() for k in d["keywords"]})),
        source=file, description=d.get("description", ""), entropy=d.get("entropy"),
        min_length=d.get("min_length", 1),
        paths=PathSet.of(d.get("paths", ())), exclude_paths=PathSet.of(d.get("exclude_paths", ())),
        window_before=d.get("window_before", DEFAULT_WINDOW_BEFORE),
        window_after=d.get("window_after", DEFAULT_WINDOW_AFTER),
        multiline=d.get("multiline", False),
        allowlist=_allowlist(d.get("allowlist"), file, rid, "allowlist"),
        pair=pair, tags=tuple(d.get("tags", ())), raw=d,
    )


def load_file(path: Path) -> tuple[list[Rule], dict[str, Any]]:
    """Parse, validate and compile one rule file; returns its rules and the raw document."""
    file = str(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise RuleError(file, f"not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RuleError(file, f"cannot read: {e}") from None
    _schema_errors(doc, file)
    rules = []
    seen: set[str] = set()
    for d in doc.get("rules", ()):
        if d["id"] in seen:
            raise RuleError(file, "duplicate rule id in one file", rule=d["id"], field="id")
        seen.add(d["id"])
        rules.append(_rule(d, file))
    return rules, doc


def _files(directory: Path) -> list[Path]:
    """``DIR/*.toml`` and ``DIR/secrets/*.toml`` (so both a rules/ tree and a flat dir work)."""
    if not directory.is_dir():
        raise RuleError(str(directory), "not a directory of rule files")
    found = sorted(directory.glob("*.toml")) + sorted((directory / "secrets").glob("*.toml"))
    return found


def load_rules(extra_dirs: Sequence[str | Path] = (), disabled: Iterable[str] = (),
               builtin: bool = True) -> RuleSet:
    """Built-in rules, then each extra directory (a later id replaces an earlier one), minus
    the disabled ids. Unknown disabled ids are a usage error (a typo would silently keep a
    rule on). Validated and compiled once per content of the rule files (``rulecache``)."""
    dirs = ([rules_dir() / "secrets"] if builtin else []) + [Path(d) for d in extra_dirs]
    disabled = tuple(sorted(set(disabled)))
    key = content_key(extra_dirs, disabled, builtin)
    if key is not None and key in _LOADED:  # the CLI's check and the analyzers share one
        return _LOADED[key]
    rs = cached(key, lambda: _load_rules(dirs, disabled, builtin))
    if key is not None:
        _LOADED[key] = rs
    return rs


_LOADED: dict[str, RuleSet] = {}


def _load_rules(dirs: list[Path], disabled: Iterable[str], builtin: bool) -> RuleSet:
    by_id: dict[str, Rule] = {}
    allow_values: set[bytes] = set()
    allow_rx: list[re.Pattern[bytes]] = []
    allow_paths: list[str] = []
    downgrades: list[Downgrade] = []
    files: list[str] = []
    h = hashlib.sha256(f"imgscan-secrets-engine:{ENGINE_VERSION}\n".encode())
    for i, d in enumerate(dirs):
        paths = sorted(d.glob("*.toml")) if (builtin and i == 0) else _files(d)
        for p in paths:
            rules, doc = load_file(p)
            files.append(str(p))
            h.update(json.dumps(doc, sort_keys=True).encode())
            for r in rules:
                by_id.pop(r.id, None)  # re-insert: load order follows the replacement
                by_id[r.id] = r
            al = doc.get("allowlist") or {}
            allow_values.update(v.encode() for v in al.get("values", ()))
            allow_rx.extend(_compile(r, str(p), "", f"allowlist.regexes[{j}]")
                            for j, r in enumerate(al.get("regexes", ())))
            allow_paths.extend(al.get("paths", ()))
            for j, dg in enumerate(doc.get("downgrade", ())):
                downgrades.append(Downgrade(
                    reason=dg["reason"],
                    values=frozenset(v.encode() for v in dg.get("values", ())),
                    regexes=tuple(_compile(r, str(p), "", f"downgrade[{j}].regexes[{k}]")
                                  for k, r in enumerate(dg.get("regexes", ()))),
                    paths=PathSet.of(dg.get("paths", ())),
                    rules=frozenset(dg.get("rules", ())),
                ))
    disabled = frozenset(disabled)
    known = set(by_id) | {r.pair.id for r in by_id.values() if r.pair}
    unknown = sorted(disabled - known)
    if unknown:
        raise RuleError("--disable-rule", f"unknown rule id(s): {', '.join(unknown)}")
    for rid in disabled:
        by_id.pop(rid, None)
    h.update(("disabled:" + ",".join(sorted(disabled))).encode())
    return RuleSet(
        rules=tuple(by_id.values()),
        allowlist=Allowlist(frozenset(allow_values), tuple(allow_rx), PathSet.of(allow_paths)),
        downgrades=tuple(downgrades),
        disabled=disabled,
        files=tuple(files),
        _digest=h.hexdigest(),
    )
