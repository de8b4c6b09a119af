"""The ``imgscan`` command's entry: ``mount`` and ``umount`` on a fast path (and ``scan``, in
``imgscan.cli_scan``), everything else through click (``imgscan.cli``).

``imgscan mount IMAGE`` is something people type and scripts call in loops; click and the
command table cost more than the mount itself. The common forms of ``mount`` and ``umount``
(their documented options, each at most once, ``--opt VALUE`` or ``--opt=VALUE``), of
imgscan's store and of ``containers-storage:``, are parsed here and call the same library
functions through ``imgscan.mounting``, which imports only what a mount needs; anything
else — ``--help``, a group option, an unknown or repeated option, a missing or extra
argument, a value click would reject — is handed to click unchanged, which gives its usual
messages and exit codes. Library errors are reported as ``imgscan.clioptions.ImgscanGroup``
reports them.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # nothing imported that a mount does not use
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

#: command -> (options taking a value, flags)
_COMMANDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "mount": (frozenset({"--root", "--mountpoint", "--driver"}), frozenset()),
    "umount": (frozenset({"--root"}), frozenset({"--force"})),
}
_DRIVERS = ("auto", "overlay", "fuse-overlayfs")
_CS = "containers-storage:"  # mounted where podman mounts it, on the fast path too


def parse(argv: Sequence[str]) -> tuple[str, dict[str, str | bool], str] | None:
    """(command, options, the one argument) for the forms handled here, else None."""
    if not argv or argv[0] not in _COMMANDS:
        return None
    valued, flags = _COMMANDS[argv[0]]
    opts: dict[str, str | bool] = {}
    args: list[str] = []
    rest = list(argv[1:])
    while rest:
        tok = rest.pop(0)
        if not tok.startswith("-") or tok == "-":
            args.append(tok)
            continue
        name, eq, value = tok.partition("=")
        if name in opts:
            return None
        if name in valued:
            if not eq:
                if not rest:
                    return None
                value = rest.pop(0)
            opts[name] = value
        elif name in flags and not eq:
            opts[name] = True
        else:  # --help, --, short options, anything unknown
            return None
    if len(args) != 1 or opts.get("--driver", "auto") not in _DRIVERS:
        return None
    from imgscan.mounting import is_other_store_ref

    if is_other_store_ref(args[0]) and (not args[0].startswith(_CS) or "--mountpoint" in opts
                                        or opts.get("--driver", "auto") != "auto"):
        return None  # docker-daemon:, or options click refuses for containers-storage:
    for path_opt in ("--root", "--mountpoint"):  # click.Path(file_okay=False)
        given = opts.get(path_opt)
        if isinstance(given, str) and (not given or os.path.isfile(given)):
            return None
    if "--root" not in opts and os.environ.get("IMGSCAN_ROOT") and \
            os.path.isfile(os.environ["IMGSCAN_ROOT"]):
        return None
    return argv[0], opts, args[0]


def _run(command: str, opts: dict[str, str | bool], arg: str) -> None:
    """As the click commands ``mount`` and ``umount`` do it, through ``imgscan.mounting``."""
    from imgscan import mounting

    if arg.startswith(_CS):
        if command == "mount":
            _say(mounting.mount_other(arg)[0])
            return
        path, count = mounting.umount_other(arg)
        _say(f"{path} still mounted (count {count})" if count else f"unmounted {path}")
        return
    given = opts.get("--root")
    root = given if isinstance(given, str) else None
    if command == "mount":
        mp, driver = opts.get("--mountpoint"), opts.get("--driver", "auto")
        rec = mounting.mount(arg, mp if isinstance(mp, str) else None, str(driver), root)
        _say(rec.path)
        return
    done = mounting.unmount(arg, force=bool(opts.get("--force")), root=root)
    if done is not None and done.count > 0:
        _say(f"{done.path} still mounted (count {done.count})")
    elif done is not None:
        _say(f"unmounted {done.path}")


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _fail(message: str, code: int) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"imgscan: error: {message}\n")
    sys.exit(code)


def _scan_job(args: list[str]) -> Callable[[], None] | None:
    """A plain ``scan`` command line's job (``imgscan.cli_scan``), else None."""
    if args[:1] != ["scan"]:
        return None
    from imgscan.cli_scan import job

    return job(args)


def main(argv: Sequence[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    parsed = parse(args)
    run = (lambda: _run(*parsed)) if parsed is not None else _scan_job(args)
    if run is None:
        from imgscan.cli import main as click_main

        if argv is None:
            click_main()  # as before: click reads sys.argv and names the program itself
        else:
            click_main(args)
        return
    from imgscan.errors import ImgscanError

    try:
        run()
    except ImgscanError as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as e:  # as ImgscanGroup: never a traceback for users
        if os.environ.get("IMGSCAN_DEBUG"):
            raise
        _fail(f"unexpected {type(e).__name__}: {e} (set IMGSCAN_DEBUG=1 for a traceback)", 3)
    sys.exit(0)
