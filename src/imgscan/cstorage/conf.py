"""Which containers/storage store a reference means, and how podman resolves short names.

The store comes from the reference's bracket part (containers/image syntax,
``[driver@graphroot+runroot:opt1,opt2]IMAGE``, every part but the graph root optional) or
else from ``storage.conf``: ``$CONTAINERS_STORAGE_CONF``, else ``/etc/containers/storage.conf``
(root) or ``$XDG_CONFIG_HOME/containers/storage.conf`` (rootless), else the documented
defaults. Short names are resolved as podman does: ``localhost/NAME`` first, then each of
``unqualified-search-registries`` from registries.conf.
"""

from __future__ import annotations

import os

from imgscan.errors import StoreError, UsageError
from imgscan.plainrecord import PlainRecord

TYPE_CHECKING = False  # no typing, dataclasses or tomllib unless needed: `imgscan mount`
if TYPE_CHECKING:
    from typing import Any

SYSTEM_STORAGE_CONF = ("/etc/containers/storage.conf", "/usr/share/containers/storage.conf")
SYSTEM_REGISTRIES_CONF = "/etc/containers/registries.conf"


class StoreConfig(PlainRecord):
    """A containers/storage store: driver ("" = detect from the graph root), both roots, and
    the driver options (kept for display; reading needs none of them)."""

    _fields = ("driver", "graph_root", "run_root", "options")
    __slots__ = _fields
    _frozen = True
    driver: str
    graph_root: str
    run_root: str
    options: tuple[str, ...]

    def __init__(self, driver: str, graph_root: str, run_root: str,
                 options: tuple[str, ...] = ()) -> None:
        self._init(driver=driver, graph_root=graph_root, run_root=run_root, options=options)

    def spec(self) -> str:
        """The bracket form containers/image prints for this store."""
        opts = ":" + ",".join(self.options) if self.options else ""
        return f"[{self.driver or 'overlay'}@{self.graph_root}+{self.run_root}{opts}]"


def parse_store_reference(text: str) -> tuple[dict[str, Any], str]:
    """Split ``[driver@graph+run:opts]IMAGE`` into store overrides and the image part.

    Same grammar as containers/image's ``ParseStoreReference``: ``driver@`` is peeled off the
    front, ``:options`` off the end, then ``+runroot``; what is left is the graph root. Paths
    must be absolute. Without a bracket the overrides are empty.
    """
    if not text.startswith("["):
        return {}, text
    close = text.find("]")
    if close < 0:
        raise UsageError(f"containers-storage:{text}: missing ']' after the store spec")
    spec, image = text[1:close], text[close + 1:]
    if not spec:
        raise UsageError(f"containers-storage:{text}: empty store spec")
    out: dict[str, Any] = {}
    if "@" in spec:
        driver, spec = spec.split("@", 1)
        if not driver or not spec:
            raise UsageError(f"containers-storage:{text}: bad 'driver@graphroot' part")
        out["driver"] = driver
    if ":" in spec:
        spec, opts = spec.split(":", 1)
        out["options"] = tuple(o for o in opts.split(",") if o)
    if "+" in spec:
        spec, run = spec.split("+", 1)
        if run:
            if not os.path.isabs(run):
                raise UsageError(f"containers-storage:{text}: run root {run!r} is not absolute")
            out["run_root"] = run
    if spec:
        if not os.path.isabs(spec):
            raise UsageError(f"containers-storage:{text}: graph root {spec!r} is not absolute")
        out["graph_root"] = spec
    return out, image


def _rootless() -> bool:
    return os.geteuid() != 0


def _load_toml(path: str) -> dict[str, Any]:
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise StoreError(f"{path}: cannot read: {e}") from None


def storage_conf_path() -> str | None:
    """The storage.conf that containers/storage would read, or None for built-in defaults."""
    env = os.environ.get("CONTAINERS_STORAGE_CONF")
    if env:
        return env
    if _rootless():
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        user = os.path.join(base, "containers", "storage.conf")
        if os.path.exists(user):
            return user
    for p in SYSTEM_STORAGE_CONF:
        if os.path.exists(p):
            return p
    return None


def _default_roots() -> tuple[str, str]:
    if not _rootless():
        return "/var/lib/containers/storage", "/run/containers/storage"
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    uid = os.geteuid()
    runtime = os.environ.get("XDG_RUNTIME_DIR") or ""
    if not runtime:
        # podman's fallbacks when XDG_RUNTIME_DIR is unset (su, cron), then c/storage's
        tries = (f"/run/user/{uid}", f"/tmp/podman-run-{uid}", f"/tmp/storage-run-{uid}")
        runtime = next((t for t in tries if os.path.isdir(t)), tries[-1])
    return os.path.join(data, "containers", "storage"), os.path.join(runtime, "containers")


def default_store() -> StoreConfig:
    """The store storage.conf names (rootless users: their own, as containers/storage does:
    a system file's roots are for root; ``rootless_storage_path`` moves the graph root)."""
    graph, run = _default_roots()
    path = storage_conf_path()
    doc = _load_toml(path) if path else {}
    st = doc.get("storage") or {}
    system_file = path in SYSTEM_STORAGE_CONF and not os.environ.get("CONTAINERS_STORAGE_CONF")
    if not (_rootless() and system_file):
        graph = str(st.get("graphroot") or graph)
        run = str(st.get("runroot") or run)
    elif st.get("rootless_storage_path"):
        graph = os.path.expandvars(str(st["rootless_storage_path"])).replace(
            "$UID", str(os.geteuid()))
    opts = st.get("options") or {}
    mountopt = (opts.get("overlay") or {}).get("mountopt") or opts.get("mountopt") or ""
    return StoreConfig(str(st.get("driver") or ""), graph, run,
                       tuple(o for o in str(mountopt).split(",") if o))


def resolve_store(text: str) -> tuple[StoreConfig, str]:
    """The store and the image part of a ``containers-storage:`` reference (without the
    transport prefix)."""
    overrides, image = parse_store_reference(text)
    conf = default_store()
    if overrides:
        conf = conf.replace(**overrides)
        if "graph_root" in overrides and "run_root" not in overrides:
            raise UsageError(f"containers-storage:{text}: a graph root needs its run root "
                             "([driver@graphroot+runroot]IMAGE)")
    return conf, image


def search_registries() -> list[str]:
    """``unqualified-search-registries`` from registries.conf (and its user override)."""
    paths = [os.environ.get("CONTAINERS_REGISTRIES_CONF") or SYSTEM_REGISTRIES_CONF]
    if _rootless() and not os.environ.get("CONTAINERS_REGISTRIES_CONF"):
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        paths.append(os.path.join(base, "containers", "registries.conf"))
    found: list[str] = []
    for p in paths:
        try:
            doc = _load_toml(p)
        except StoreError:
            continue
        regs = doc.get("unqualified-search-registries")
        if isinstance(regs, list):
            found = [str(r) for r in regs]  # a later file replaces the list, as in c/image
    return found
