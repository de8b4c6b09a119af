"""One pass over a chunk that finds every rule keyword at once.

Two backends behind one interface: Hyperscan (``hyperscan`` wheel, x86-64; SIMD literal
matching at gigabytes per second) when it is importable, else Aho-Corasick via pyahocorasick
(portable; about 80 MB/s on this project's machines because it needs a lower-cased str copy
of each chunk). Both report the same hits: ``(start, end, rule_indexes)`` with ``end``
exclusive, case-insensitive, overlapping occurrences included.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping, Sequence

Hit = tuple[int, int, tuple[int, ...]]


class Prefilter:
    backend = "none"

    def hits(self, buf: bytes) -> list[Hit]:  # pragma: no cover - interface
        raise NotImplementedError


class SmallPrefilter(Prefilter):
    """``bytes.find`` per keyword on a lower-cased copy: no automaton to build, which is
    what a few kilobytes (an image config, a small file) want. Same hits, in end order."""

    backend = "find"

    def __init__(self, keywords: Mapping[str, Sequence[int]]) -> None:
        self._words = [(k.encode("utf-8").lower(), tuple(idx)) for k, idx in keywords.items()]

    def hits(self, buf: bytes) -> list[Hit]:
        low = buf.lower()
        out: list[Hit] = []
        for kb, idx in self._words:
            at = low.find(kb)
            while at >= 0:
                out.append((at, at + len(kb), idx))
                at = low.find(kb, at + 1)
        out.sort(key=lambda h: (h[1], h[0]))
        return out


class AhoCorasickPrefilter(Prefilter):
    backend = "pyahocorasick"

    def __init__(self, keywords: Mapping[str, Sequence[int]]) -> None:
        import ahocorasick

        self._a = ahocorasick.Automaton()
        for k, idx in keywords.items():
            kb = k.encode("utf-8").lower()
            self._a.add_word(kb.decode("latin-1"), (len(kb), tuple(idx)))
        self._a.make_automaton()

    def hits(self, buf: bytes) -> list[Hit]:
        # Latin-1: one byte is one character, so offsets are byte offsets
        text = buf.lower().decode("latin-1")
        return [(end - klen + 1, end + 1, idx) for end, (klen, idx) in self._a.iter(text)]


class HyperscanPrefilter(Prefilter):
    backend = "hyperscan"

    def __init__(self, keywords: Mapping[str, Sequence[int]]) -> None:
        import hyperscan

        self._hs = hyperscan
        words = list(keywords)
        raw = [k.encode("utf-8") for k in words]
        self._meta = [(len(kb), tuple(keywords[k])) for k, kb in zip(words, raw, strict=True)]
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(
            expressions=[re.escape(kb) for kb in raw],
            ids=list(range(len(words))),
            elements=len(words),
            flags=[hyperscan.HS_FLAG_CASELESS] * len(words),
        )
        self._local = threading.local()

    def hits(self, buf: bytes) -> list[Hit]:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:  # one scratch per thread: Hyperscan's rule for concurrent scans
            scratch = self._local.scratch = self._hs.Scratch(self._db)
        out: list[Hit] = []
        meta = self._meta

        def on_match(i: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
            klen, idx = meta[i]
            out.append((to - klen, to, idx))

        self._db.scan(buf, match_event_handler=on_match, scratch=scratch)
        return out


def build(keywords: Mapping[str, Sequence[int]], backend: str | None = None) -> Prefilter | None:
    """The fastest available backend (``IMGSCAN_PREFILTER=pyahocorasick`` forces one)."""
    if not keywords:
        return None
    want = backend or os.environ.get("IMGSCAN_PREFILTER", "")
    if want in ("", "hyperscan"):
        try:
            return HyperscanPrefilter(keywords)
        except ImportError:
            if want == "hyperscan":
                raise
        except Exception:  # a keyword Hyperscan cannot compile: the portable backend can
            if want == "hyperscan":
                raise
    return AhoCorasickPrefilter(keywords)
