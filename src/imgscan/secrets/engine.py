"""The secret-scanning engine: keyword prefilter, bounded regex windows, streaming.

How a file is scanned, and why:

1. One multi-keyword pass (Hyperscan, or Aho-Corasick via pyahocorasick; ``prefilter.py``)
   finds every keyword of every rule at once; a rule whose keywords do not occur costs
   nothing more. (Trivy spent about half its secret-scan time checking keywords rule by
   rule; see ANCHORS.md.)
2. Each regex runs only on a bounded window around its keyword hits (the hit's line, capped
   at ``window_before``/``window_after`` bytes). A 100 MB single-line file or a hostile
   regex therefore costs at most the window, never the whole line.
3. Files are read in chunks with an overlap of the largest window, so memory is bounded by
   the chunk size and a secret straddling a chunk border is still found exactly once: a hit
   is handled in the first chunk that holds its entire window.
4. Candidates then pass through the filters that decide what is *not* a secret: minimum
   length, entropy, allowlists, placeholders (``${VAR}``, ``changeme``), and the downgrades
   that keep documentation values and packaged test material at info with a reason.

Everything works on bytes (regexes are compiled for bytes), so invalid UTF-8 cannot fail and
offsets and columns are byte offsets.
"""

from __future__ import annotations

import io
import math
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import BinaryIO

from imgscan.model import Severity
from imgscan.secrets.prefilter import Prefilter, SmallPrefilter, build
from imgscan.secrets.redact import fingerprint, redact
from imgscan.secrets.rules import Rule, RuleSet

CHUNK_SIZE = 1 << 20
#: buffers up to this size are served without building the fast prefilter, for the first
#: SMALL_CALLS of them (an image config; a scan of many files builds it soon enough)
SMALL_BUFFER = 16 << 10
SMALL_CALLS = 32
BINARY_SNIFF = 8000
#: findings past this many in one file are dropped with a warning (a dump of tokens is one
#: problem, not a million findings)
MAX_MATCHES_PER_FILE = 200
#: seconds of regex time one rule may spend on one file before it is switched off for it
RULE_TIME_BUDGET = 5.0
CONTEXT_LIMIT = 160


@dataclass(frozen=True)
class Match:
    """One secret found in one file (or config value). ``secret`` never leaves this object
    unredacted except through ``evidence(show=True)``."""

    rule_id: str
    title: str
    severity: Severity
    secret: bytes = field(repr=False)
    start: int
    end: int
    line: int
    column: int
    context: bytes = field(default=b"", repr=False)  # the whole regex match, capped
    secret_offset: int = 0  # where the secret starts inside ``context``
    reason: str = ""  # why the severity was lowered to info
    parts: tuple[Match, ...] = ()  # the matches a pair was built from
    #: other secrets inside ``context`` as (offset, length): redacted in the evidence too
    masks: tuple[tuple[int, int], ...] = ()

    @property
    def fingerprint(self) -> str:
        if self.parts:
            return fingerprint(b"\0".join(p.secret for p in self.parts))
        return fingerprint(self.secret)

    def evidence(self, show: bool = False) -> str:
        """The match in context with the secret redacted (or in full when ``show``)."""
        if self.parts:
            return " + ".join(p.evidence(show) for p in self.parts)
        ctx = self.context
        i, j = self.secret_offset, self.secret_offset + len(self.secret)
        if not ctx or ctx[i:j] != self.secret:
            return _render(self.secret, show)
        before: list[str] = []
        after: list[str] = []
        pos = 0
        # every other detected secret in the context is rendered like this one
        for off, n in sorted([*self.masks, (i, j - i)]):
            if off < pos or off + n > len(ctx):
                continue
            side = before if off < i else after
            if off != i:
                side.append(_printable(ctx[pos:off]) if off > pos else "")
                side.append(_render(ctx[off : off + n], show))
            else:
                before.append(_printable(ctx[pos:off]))
            pos = off + n
        after.append(_printable(ctx[pos:]))
        return f"{''.join(before)[-60:]}{_render(self.secret, show)}{''.join(after)[:40]}"

    def __str__(self) -> str:  # never the raw secret, even by accident
        return f"{self.rule_id} at {self.line}:{self.column}: {self.evidence()}"


def _render(secret: bytes, show: bool) -> str:
    return _printable(secret) if show else redact(secret)


def _printable(b: bytes) -> str:
    text = b.decode("utf-8", "replace")
    return "".join(c if c.isprintable() else " " for c in text)


# ---------------------------------------------------------------------------- filters


def shannon_entropy(data: bytes) -> float:
    """Bits per character: random base64 is near 6, English words near 3, ``aaaa`` is 0."""
    if not data:
        return 0.0
    n = len(data)
    return -sum(c / n * math.log2(c / n) for c in Counter(data).values())


_TEMPLATE = re.compile(
    rb"\$\{[^}]*\}|\$\(|\{\{.*?\}\}|%\([A-Za-z_][A-Za-z0-9_]*\)[sd]|<[^<>]{1,60}>|"
    rb"^\$[A-Za-z_][A-Za-z0-9_]*$|^%[A-Za-z_][A-Za-z0-9_]*%$|\{[a-z_]+\}|@[A-Za-z_]+@"
)
_PLACEHOLDER_WORDS = (
    b"changeme", b"change_me", b"change-me", b"changeit", b"placeholder", b"your_", b"your-",
    b"yourpass", b"yoursecret", b"yourtoken", b"yourkey", b"dummy", b"redacted", b"xxxx",
    b"****", b"....", b"replace_me", b"replaceme", b"insert_", b"notasecret", b"not-a-secret",
    b"not_a_secret", b"foobar", b"fixme", b"todo",
)
_EXAMPLE_WORDS = (b"example", b"sample", b"fake", b"mock")


def placeholder_reason(secret: bytes) -> tuple[str, str] | None:
    """Why a value is not a live secret: ``("drop", why)`` for templates and placeholders,
    ``("info", why)`` for documentation-style example values; None for a candidate."""
    if _TEMPLATE.search(secret):
        return ("drop", "template variable")
    if len(secret) >= 6 and len(set(secret)) <= 2:
        return ("drop", "repeated characters")
    if len(secret) > 100:
        # long random bodies (keys, JWTs) contain any short word by chance
        return None
    low = secret.lower()
    for w in _PLACEHOLDER_WORDS:
        if w in low:
            return ("drop", "placeholder value")
    for w in _EXAMPLE_WORDS:
        if w in low:
            return ("info", "documentation example value")
    return None


# ---------------------------------------------------------------------------- scanner


@dataclass
class _FileState:
    path: str
    rules: list[int]
    matches: list[Match] = field(default_factory=list)
    seen: set[tuple[int, int, int]] = field(default_factory=set)
    spent: dict[int, float] = field(default_factory=dict)
    off: set[int] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    overflow: bool = False


class SecretScanner:
    """Compiled once per rule set; ``scan_bytes``/``scan_stream`` are then safe to call
    for any number of files (the scanner holds no per-file state)."""

    def __init__(self, ruleset: RuleSet, scan_binaries: bool = False,
                 chunk_size: int = CHUNK_SIZE, backend: str | None = None) -> None:
        self.ruleset = ruleset
        self.rules: tuple[Rule, ...] = ruleset.rules
        self.scan_binaries = scan_binaries
        self.chunk_size = max(chunk_size, 4096)
        self.max_keyword = max((len(k) for r in self.rules for k in r.keywords), default=1)
        self.overlap = max(
            (r.window_before + r.window_after for r in self.rules), default=0
        ) + self.max_keyword + 1
        by_kw: dict[str, list[int]] = {}
        for i, r in enumerate(self.rules):
            for k in r.keywords:
                by_kw.setdefault(k, []).append(i)
        # built on first use (a Hyperscan database takes ~0.1 s to compile): a scan whose
        # layers are all cached only looks at the image config, which the small-buffer
        # prefilter serves
        self._by_kw = by_kw
        self._backend_choice = backend
        self._big: Prefilter | None = None
        self._small = SmallPrefilter(by_kw) if by_kw else None
        self._small_calls = 0
        self._index = {r.id: i for i, r in enumerate(self.rules)}

    @property
    def _prefilter(self) -> Prefilter | None:
        if self._big is None and self._by_kw:
            self._big = build(self._by_kw, self._backend_choice)
        return self._big

    def _prefilter_for(self, buf: bytes) -> Prefilter:
        if self._big is None and len(buf) <= SMALL_BUFFER and self._small is not None \
                and self._small_calls < SMALL_CALLS:
            self._small_calls += 1
            return self._small
        pf = self._prefilter
        assert pf is not None
        return pf

    @property
    def backend(self) -> str:
        return self._prefilter.backend if self._prefilter else "none"

    # -- public API ------------------------------------------------------------

    def is_binary(self, head: bytes) -> bool:
        """A NUL byte near the start marks a binary file (git's and grep's test)."""
        return b"\0" in head[:BINARY_SNIFF]

    def scan_bytes(self, data: bytes, path: str = "",
                   warnings: list[str] | None = None) -> list[Match]:
        """Scan an in-memory value (a small file, a config string)."""
        return self.scan_stream(io.BytesIO(data), path, warnings)

    def scan_stream(self, stream: BinaryIO, path: str = "",
                    warnings: list[str] | None = None) -> list[Match]:
        """Scan a stream in overlapping chunks; memory stays near two chunks whatever the
        file size. Warnings (never containing secret values) go to ``warnings``."""
        rel = path.lstrip("/")
        if rel and self.ruleset.allowlist.paths.matches(rel):
            return []
        wanted = [i for i, r in enumerate(self.rules) if r.wants_path(rel)]
        if not wanted or self._small is None:
            return []
        st = _FileState(rel, wanted)
        cs = self.chunk_size
        cur = stream.read(cs)
        if not cur:
            return []
        if not self.scan_binaries and self.is_binary(cur):
            return []
        base = 0
        line0, col0 = 1, 0
        while True:
            nxt = stream.read(cs)
            eof = not nxt
            self._scan_chunk(st, cur, base, line0, col0, eof)
            if eof or st.overflow:
                break
            keep = cur[-self.overlap:] if len(cur) > self.overlap else cur
            dropped = cur[: len(cur) - len(keep)]
            nl = dropped.count(b"\n")
            if nl:
                line0 += nl
                col0 = len(dropped) - dropped.rfind(b"\n") - 1
            else:
                col0 += len(dropped)
            base += len(dropped)
            cur = keep + nxt
            # matches starting before the new chunk can never be found again: forget them,
            # so a file of a million placeholders does not grow this set
            st.seen = {k for k in st.seen if k[1] >= base}
        if warnings is not None:
            warnings.extend(st.warnings)
        return self._finish(st)

    # -- per chunk ---------------------------------------------------------------

    def _scan_chunk(self, st: _FileState, buf: bytes, base: int, line0: int, col0: int,
                    eof: bool) -> None:
        wanted = set(st.rules)
        windows: dict[int, list[tuple[int, int]]] = {}
        n = len(buf)
        at_start = base == 0
        for p, kend, idxs in self._prefilter_for(buf).hits(buf):
            for i in idxs:
                if i not in wanted or i in st.off:
                    continue
                r = self.rules[i]
                ws, we = p - r.window_before, kend + r.window_after
                # handle each hit in the first chunk that holds its whole window
                if (ws < 0 and not at_start) or (we > n and not eof):
                    continue
                ws, we = max(ws, 0), min(we, n)
                if not r.multiline:
                    nl = buf.rfind(b"\n", ws, p)
                    ws = nl + 1 if nl >= 0 else ws
                    nl = buf.find(b"\n", kend, we)
                    we = nl if nl >= 0 else we
                windows.setdefault(i, []).append((ws, we))
        for i, spans in windows.items():
            self._run_rule(st, i, buf, base, line0, col0, _merge(spans))

    def _run_rule(self, st: _FileState, i: int, buf: bytes, base: int, line0: int,
                  col0: int, spans: Iterable[tuple[int, int]]) -> None:
        r = self.rules[i]
        t0 = time.monotonic()
        for ws, we in spans:
            for m in r.regex.finditer(buf, ws, we):
                s, e = m.span("secret")
                if s < 0 or e <= s:
                    continue
                key = (i, base + s, base + e)
                if key in st.seen:
                    continue
                st.seen.add(key)
                self._candidate(st, r, buf, m, s, e, base, line0, col0)
                if st.overflow:
                    return
            if time.monotonic() - t0 + st.spent.get(i, 0.0) > RULE_TIME_BUDGET:
                st.off.add(i)
                st.warnings.append(f"secret rule {r.id} took more than {RULE_TIME_BUDGET:.0f}"
                                   f" s on this file and was stopped for it")
                break
        st.spent[i] = st.spent.get(i, 0.0) + time.monotonic() - t0

    def _candidate(self, st: _FileState, r: Rule, buf: bytes, m: re.Match[bytes], s: int,
                   e: int, base: int, line0: int, col0: int) -> None:
        secret = buf[s:e]
        if len(secret) < r.min_length:
            return
        if r.entropy is not None and shannon_entropy(secret) < r.entropy:
            return
        if r.allowlist.allows_value(secret) or self.ruleset.allowlist.allows_value(secret):
            return
        if st.path and r.allowlist.paths.matches(st.path):
            return
        severity, reason = r.severity, ""
        for dg in self.ruleset.downgrades:
            if dg.applies(r.id, secret, st.path):
                severity, reason = Severity.INFO, dg.reason
                break
        if not reason:
            ph = placeholder_reason(secret)
            if ph is not None:
                if ph[0] == "drop":
                    return
                severity, reason = Severity.INFO, ph[1]
        nl = buf.rfind(b"\n", 0, s)
        line = line0 + buf.count(b"\n", 0, s)
        col = (s - nl) if nl >= 0 else col0 + s + 1
        ms, me = m.span()
        ctx_s = max(ms, s - CONTEXT_LIMIT)
        ctx_e = min(me, e + CONTEXT_LIMIT)
        st.matches.append(Match(
            rule_id=r.id, title=r.title, severity=severity, secret=secret,
            start=base + s, end=base + e, line=line, column=col,
            context=buf[ctx_s:ctx_e], secret_offset=s - ctx_s, reason=reason,
        ))
        if len(st.matches) >= MAX_MATCHES_PER_FILE:
            st.overflow = True
            st.warnings.append(f"more than {MAX_MATCHES_PER_FILE} secret matches; "
                               f"the rest of this file was not scanned")

    # -- per file ----------------------------------------------------------------

    def _finish(self, st: _FileState) -> list[Match]:
        matches = _drop_overlaps(st.matches, self._index)
        matches = [_with_masks(m, st.matches) for m in matches]
        matches = self._pairs(matches)
        return sorted(matches, key=lambda m: (m.start, m.rule_id))

    def _pairs(self, matches: list[Match]) -> list[Match]:
        """Join rules declared as a pair (AWS key id + secret key) when they are near."""
        out = list(matches)
        for r in self.rules:
            if r.pair is None or r.pair.id in self.ruleset.disabled:
                continue
            pr = r.pair
            firsts = [m for m in out if m.rule_id == r.id and not m.reason]
            seconds = [m for m in out if m.rule_id == pr.with_rule and not m.reason]
            used: set[int] = set()
            for a in firsts:
                best = min(
                    (b for b in seconds if id(b) not in used
                     and abs(b.start - a.start) <= pr.distance),
                    key=lambda b: abs(b.start - a.start), default=None,
                )
                if best is None:
                    continue
                used.add(id(best))
                out.remove(a)
                out.remove(best)
                out.append(replace(
                    a, rule_id=pr.id, title=pr.title, severity=pr.severity,
                    secret=a.secret + b"\0" + best.secret, end=max(a.end, best.end),
                    context=b"", parts=(a, best),
                ))
        return out


def _with_masks(m: Match, found: list[Match]) -> Match:
    """Note where other secrets sit inside this match's context (the twilio rule's context
    may span the auth-token line before the key), so the evidence redacts them too."""
    c0 = m.start - m.secret_offset
    c1 = c0 + len(m.context)
    masks = tuple(
        (max(o.start, c0) - c0, min(o.end, c1) - max(o.start, c0))
        for o in found
        if o.start < c1 and c0 < o.end and not (o.start == m.start and o.end == m.end)
        and not (o.start >= m.start and o.end <= m.end)
    )
    return replace(m, masks=masks) if masks else m


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    spans.sort()
    out: list[tuple[int, int]] = []
    for s, e in spans:
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def _drop_overlaps(matches: list[Match], order: dict[str, int]) -> list[Match]:
    """Where two rules matched overlapping bytes (a JWT inside a kubeconfig token, a PKCS#8
    key inside a GCP service-account file), keep only the more specific finding: higher
    severity, then the longer secret, then the earlier rule."""
    def rank(m: Match) -> tuple[int, int, int]:
        return (-m.severity.rank, -(m.end - m.start), order.get(m.rule_id, 0))

    kept: list[Match] = []
    for m in sorted(matches, key=rank):
        if any(k.rule_id != m.rule_id and k.start < m.end and m.start < k.end for k in kept):
            continue
        kept.append(m)
    return kept
