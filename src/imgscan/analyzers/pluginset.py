"""The analyzers of one scanner: which run, and what the report key needs of them, known
from the remembered identities (``analyzers.identity``) without importing any plugin when it
can; the plugins themselves are loaded when a file or an image-wide analyzer has to run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from imgscan.analyzers import identity
from imgscan.analyzers.interface import Analyzer, PostAnalyzer, ScanOptions
from imgscan.analyzers.registry import (
    LoadedPlugin,
    find_plugins,
    load_all,
    select,
    with_always_run,
)
from imgscan.errors import UsageError


class PluginSet:
    def __init__(self, analyzers: Sequence[str] | None, options: ScanOptions,
                 plugins: Sequence[LoadedPlugin] | None = None) -> None:
        self.options = options
        self.loaded: list[LoadedPlugin] | None = None
        self.file: list[Analyzer] = []
        self.post: list[PostAnalyzer] = []
        self.known: list[identity.Identity] | None = None
        if plugins is not None:
            given = list(plugins)
            self._use(select(given, with_always_run(given, analyzers)) if analyzers else given)
            return
        specs = find_plugins()
        memo = identity.memo_key(specs, options)
        known = identity.recall(memo)
        if known is not None:
            self.known = select_known(known, analyzers)
            return
        everything = load_all(specs)
        self._use(select(everything, with_always_run(everything, analyzers)) if analyzers
                  else everything)
        if memo is not None:  # every plugin, so that any --analyzers choice is a hit
            made: dict[type, Any] = {type(a): a for a in [*self.file, *self.post]}
            identity.remember(memo, [identity.of(made.get(p.cls) or p.cls(options),
                                                 p.spec.entry_point)
                                     for p in everything])

    def _use(self, loaded: list[LoadedPlugin]) -> None:
        self.loaded = loaded
        self.file = [p.cls(self.options) for p in loaded if not p.is_post]  # type: ignore[misc]
        self.post = [p.cls(self.options) for p in loaded if p.is_post]  # type: ignore[misc]

    def load(self) -> PluginSet:
        if self.loaded is None:
            assert self.known is not None
            self._use(select(load_all(), [k.name for k in self.known]))
        return self

    def identities(self) -> list[identity.Identity]:
        """The analyzers that run, per-file ones first, as the report key takes them; from
        the remembered identities when nothing is loaded yet."""
        if self.loaded is None and self.known is not None:
            return [*(k for k in self.known if not k.is_post),
                    *(k for k in self.known if k.is_post)]
        return [identity.of(a) for a in [*self.file, *self.post]]


def select_known(known: Sequence[identity.Identity],
                 wanted: Sequence[str] | None) -> list[identity.Identity]:
    """``registry.select`` with ``with_always_run`` on remembered identities."""
    if not wanted:
        return list(known)
    by_name = {k.name: k for k in known}
    names = list(dict.fromkeys([*wanted, *(k.name for k in known if k.always_run)]))
    unknown = [w for w in names if w not in by_name]
    if unknown:
        raise UsageError(f"unknown analyzer(s) {', '.join(unknown)}; installed: "
                         f"{', '.join(sorted(by_name))}")
    return [by_name[n] for n in names]
