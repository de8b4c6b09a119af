"""Discovering analyzer plugins: find, load, validate (after flake8's plugin finder).

Every analyzer — built-in or third-party — is an entry point in the group
``imgscan.analyzers`` whose object is an ``Analyzer`` or ``PostAnalyzer`` subclass. Discovery
reads metadata only; loading imports the module; a failure names the distribution.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from imgscan.analyzers.interface import Analyzer, AnalyzerError, PostAnalyzer
from imgscan.entrypoints import group as entry_point_group
from imgscan.errors import UsageError

GROUP = "imgscan.analyzers"


@dataclass(frozen=True)
class PluginSpec:
    """An analyzer entry point before its module is imported."""

    entry_point: str  # name in the group
    value: str  # module:Class
    distribution: str
    dist_version: str


@dataclass(frozen=True)
class LoadedPlugin:
    """An analyzer entry point and the class it loaded."""

    spec: PluginSpec
    cls: type[Analyzer] | type[PostAnalyzer]

    @property
    def name(self) -> str:
        return self.cls.name

    @property
    def version(self) -> int:
        return self.cls.version

    @property
    def is_post(self) -> bool:
        return issubclass(self.cls, PostAnalyzer)


def find_plugins() -> list[PluginSpec]:
    """Entry points of the group, de-duplicated and sorted; nothing is imported."""
    seen: dict[tuple[str, str], PluginSpec] = {}
    for ep in entry_point_group(GROUP):
        seen.setdefault((ep.name, ep.value),
                        PluginSpec(ep.name, ep.value, ep.distribution, ep.version))
    return sorted(seen.values(), key=lambda s: s.entry_point)


def load_plugin(spec: PluginSpec) -> LoadedPlugin:
    try:
        module_name, _, attr = spec.value.partition(":")
        module = __import__(module_name, fromlist=["_"])
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as e:  # any import-time failure of a plugin is its distribution's fault
        raise AnalyzerError(
            f"analyzer plugin {spec.entry_point!r} from distribution {spec.distribution} "
            f"{spec.dist_version} failed to load: {type(e).__name__}: {e}"
        ) from None
    if not (isinstance(obj, type) and issubclass(obj, Analyzer | PostAnalyzer)):
        raise AnalyzerError(
            f"analyzer plugin {spec.entry_point!r} from distribution {spec.distribution} is "
            f"not an Analyzer or PostAnalyzer subclass ({spec.value})"
        )
    for attr_name in ("name", "version"):
        if not hasattr(obj, attr_name):
            raise AnalyzerError(f"analyzer {spec.value} from {spec.distribution} has no "
                                f"'{attr_name}'")
    return LoadedPlugin(spec, obj)


def load_all(specs: Iterable[PluginSpec] | None = None) -> list[LoadedPlugin]:
    plugins = [load_plugin(s) for s in (find_plugins() if specs is None else specs)]
    names: dict[str, LoadedPlugin] = {}
    for p in plugins:
        other = names.get(p.name)
        if other is not None and other.cls is not p.cls:
            raise AnalyzerError(
                f"two analyzers are named {p.name!r}: {other.spec.value} "
                f"({other.spec.distribution}) and {p.spec.value} ({p.spec.distribution})"
            )
        names[p.name] = p
    return sorted(names.values(), key=lambda p: p.name)


def with_always_run(plugins: Sequence[LoadedPlugin], wanted: Sequence[str]) -> list[str]:
    """``wanted`` followed by the analyzers that run whatever was asked (``always_run``)."""
    return list(dict.fromkeys([*wanted, *(p.name for p in plugins if p.cls.always_run)]))


def load_selected(wanted: Sequence[str] | None) -> list[LoadedPlugin]:
    """Load the analyzers asked for, plus those that always run. Whether one always runs is
    a class attribute (the plugin says so, not the scanner), so every plugin is loaded to
    ask it; unknown names are a usage error that lists what exists."""
    plugins = load_all()
    return select(plugins, with_always_run(plugins, wanted)) if wanted else plugins


def select(plugins: Sequence[LoadedPlugin], wanted: Sequence[str] | None) -> list[LoadedPlugin]:
    """Keep the analyzers named in ``wanted`` (all when None); unknown names are a usage
    error that lists what exists."""
    if not wanted:
        return list(plugins)
    by_name = {p.name: p for p in plugins}
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        raise UsageError(f"unknown analyzer(s) {', '.join(unknown)}; installed: "
                         f"{', '.join(sorted(by_name))}")
    return [by_name[w] for w in wanted]
