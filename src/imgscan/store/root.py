"""Where a store lives, the directories every store has (made on first use), and reading
its ``store.json``.

Shared by the full store (``imgscan.store.core``) and the lean view ``imgscan mount`` reads
(``imgscan.store.view``), so both open a root the same way, with the same errors.
"""

from __future__ import annotations

import os

from imgscan.errors import StoreError

STORE_DIRS = ("layers", "l", "images", "staging", "trash", "cache", "run")


def default_root() -> str:
    """``$IMGSCAN_ROOT``, else /var/lib/imgscan for root, else the XDG data directory."""
    env = os.environ.get("IMGSCAN_ROOT")
    if env:
        return env
    if os.geteuid() == 0:
        return "/var/lib/imgscan"
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(data, "imgscan")


def prepare_root(root: str | None, create: bool = True) -> str:
    """The absolute store root, with its directories made. ``create=False`` refuses a root
    that does not exist: a read-only command on a mistyped --root must not make a store."""
    root = os.path.abspath(root or default_root())
    if not create and not os.path.isdir(root):
        raise StoreError(f"no store at {root}: nothing was pulled there (check "
                         "--root and $IMGSCAN_ROOT, or 'imgscan pull' an image first)")
    try:
        for d in STORE_DIRS:
            os.makedirs(os.path.join(root, d), exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create the store at {root}: {e.strerror}") from None
    return root


def read_store_json(path: str) -> object:
    """The parsed ``store.json`` at ``path`` (None when there is none yet). Call with the
    store's lock held."""
    from imgscan.jsonlite import loads

    try:
        with open(path, "rb") as f:
            return loads(f.read())
    except FileNotFoundError:
        return None
    except (ValueError, OSError) as e:
        raise StoreError(f"store metadata {path} is unreadable: {e}") from None
