"""Safe extraction: the store's security boundary, attacked with hand-written tars."""

from __future__ import annotations

import io
import os
import stat
import tarfile

import pytest

from imagebuild import OPQ, WH, D, Entry, F, H, L, layer_tar
from imgscan.analyzers.interface import FileKind
from imgscan.errors import ImageError, UnsafeLayerError
from imgscan.store.extract import ExtractLimits, extract_layer


def extract(tmp_path, entries, as_root=True, limits=None):
    dest = tmp_path / "dest"
    dest.mkdir()
    res = extract_layer(io.BytesIO(layer_tar(entries)), str(dest), limits, as_root=as_root)
    return dest, res


def outside_untouched(tmp_path):
    return not (tmp_path / "escaped").exists() and not os.path.exists("/tmp/imgscan-escape")


def test_modes_owners_setuid_and_links_preserved(tmp_path):
    dest, res = extract(tmp_path, [
        D("usr/bin"), F("usr/bin/su", b"x", mode=0o4755), F("usr/bin/wall", b"y", mode=0o2755,
                                                           gid=5),
        D("tmp", mode=0o1777), F("etc/shadow", b"s", mode=0o640, uid=0, gid=42),
        L("etc/localtime", "/usr/share/zoneinfo/UTC"), H("usr/bin/su2", "usr/bin/su"),
        D("ro", mode=0o555), F("ro/file", b"z"),
    ])
    st = os.lstat(dest / "usr/bin/su")
    assert stat.S_IMODE(st.st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(dest / "usr/bin/wall").st_mode) == 0o2755
    assert os.lstat(dest / "usr/bin/wall").st_gid == 5
    assert stat.S_IMODE(os.lstat(dest / "tmp").st_mode) == 0o1777
    assert os.lstat(dest / "etc/shadow").st_gid == 42
    assert os.readlink(dest / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert os.lstat(dest / "usr/bin/su2").st_ino == st.st_ino
    assert stat.S_IMODE(os.lstat(dest / "ro").st_mode) == 0o555
    idx = {e.path: e for e in res.entries}
    assert idx["usr/bin/su"].mode == 0o4755
    assert idx["usr/bin/su2"].kind == FileKind.HARDLINK
    assert idx["usr/bin/su2"].linkname == "usr/bin/su"
    assert idx["etc/shadow"].gid == 42
    assert idx["usr"].kind == FileKind.DIR  # implicit parent recorded


@pytest.mark.parametrize("entries, needle", [
    ([F("../escaped", b"x")], "'..'"),
    ([F("a/../../escaped", b"x")], "'..'"),
    ([F("/tmp/imgscan-escape", b"x")], "absolute"),
    ([L("etc", "/"), F("etc/escaped", b"x")], "symlink"),
    ([L("etc", "../../"), F("etc/escaped", b"x")], "symlink"),
    ([D("a"), L("a/b", "/tmp"), F("a/b/c/escaped", b"x")], "symlink"),
    ([H("hl", "../escaped")], "'..'"),
    ([H("hl", "/etc/passwd")], "absolute"),
    ([H("hl", "etc/passwd")], "not in this layer"),
    ([L("link", "/etc/passwd"), H("hl", "link")], "not a regular file"),
    ([F(".wh.", b"")], "bare whiteout"),
    ([F("a/.wh.", b"")], "bare whiteout"),
])
def test_hostile_entries_are_refused(tmp_path, entries, needle):
    with pytest.raises(UnsafeLayerError, match=needle):
        extract(tmp_path, entries)
    assert outside_untouched(tmp_path)


def test_entry_count_and_size_caps(tmp_path):
    with pytest.raises(UnsafeLayerError, match="entries"):
        extract(tmp_path, [F(f"f{i}", b"") for i in range(20)],
                limits=ExtractLimits(max_entries=10))
    (tmp_path / "dest").rmdir() if not os.listdir(tmp_path / "dest") else None
    dest2 = tmp_path / "d2"
    dest2.mkdir()
    with pytest.raises(UnsafeLayerError, match="larger than the limit"):
        extract_layer(io.BytesIO(layer_tar([F("big", b"x" * 5000)])), str(dest2),
                      ExtractLimits(max_bytes=1000), as_root=True)


def test_overlay_xattrs_from_the_tar_are_dropped(tmp_path):
    dest, res = extract(tmp_path, [
        D("d", xattrs={"trusted.overlay.opaque": "y"}),
        F("f", b"x", xattrs={"trusted.overlay.redirect": "/etc", "user.overlay.origin": "x",
                             "user.containers.override_stat": "0:0:4755", "user.keep": "v"}),
    ])
    with pytest.raises(OSError):
        os.getxattr(dest / "d", "trusted.overlay.opaque")
    assert os.getxattr(dest / "f", "user.keep") == b"v"
    for name in ("trusted.overlay.redirect", "user.overlay.origin",
                 "user.containers.override_stat"):
        with pytest.raises(OSError):
            os.getxattr(dest / "f", name)
    # the index keeps what the tar said, for the analyzers
    idx = {e.path: e for e in res.entries}
    assert idx["f"].xattrs["user.containers.override_stat"] == b"0:0:4755"


def test_whiteouts_as_root_are_overlay_form(tmp_path):
    dest, res = extract(tmp_path, [D("etc"), WH("etc/secret"), D("opt"), OPQ("opt"),
                                   F("opt/new", b"n")])
    st = os.lstat(dest / "etc/secret")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(dest / "opt", "trusted.overlay.opaque") == b"y"
    assert not (dest / "opt/.wh..wh..opq").exists()
    kinds = {(e.path, e.kind) for e in res.entries}
    assert ("etc/secret", FileKind.WHITEOUT) in kinds
    assert ("opt", FileKind.OPAQUE) in kinds
    assert res.whiteout_format == "chardev"


def test_rootless_extraction_keeps_wh_files_and_skips_devices(tmp_path):
    dest, res = extract(tmp_path, [
        D("etc"), WH("etc/secret"), OPQ("opt"),
        Entry("dev/null", "char", mode=0o666, devmajor=1, devminor=3),
    ], as_root=False)
    assert (dest / "etc/.wh.secret").is_file()
    assert (dest / "opt/.wh..wh..opq").is_file()
    assert not (dest / "dev/null").exists()
    idx = {e.path: e for e in res.entries}
    assert idx["dev/null"].kind == FileKind.CHAR and idx["dev/null"].devminor == 3
    assert res.whiteout_format == "wh-files"


def test_duplicate_paths_last_one_wins(tmp_path):
    dest, res = extract(tmp_path, [F("a", b"first"), D("b"), F("b/x", b"1"), F("a", b"second"),
                                   F("b", b"now a file")])
    assert (dest / "a").read_bytes() == b"second"
    assert (dest / "b").read_bytes() == b"now a file"
    paths = [e.path for e in res.entries]
    assert "b/x" not in paths and paths.count("a") == 1


def test_truncated_and_garbage_tars_are_image_errors(tmp_path):
    data = layer_tar([F("a", b"x" * 10000)])
    for i, blob in enumerate([data[:700], b"garbage" * 100]):
        dest = tmp_path / f"d{i}"
        dest.mkdir()
        with pytest.raises(ImageError):
            extract_layer(io.BytesIO(blob), str(dest), as_root=True)


def test_fifo_is_created_never_opened(tmp_path):
    dest, _ = extract(tmp_path, [Entry("run/fifo", "fifo", mode=0o644)])
    assert stat.S_ISFIFO(os.lstat(dest / "run/fifo").st_mode)


def test_gnu_and_ustar_formats(tmp_path):
    for fmt in (tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT):
        dest = tmp_path / f"d{fmt}"
        dest.mkdir()
        extract_layer(io.BytesIO(layer_tar([F("x/" + "n" * 90, b"ok")], fmt=fmt)), str(dest),
                      as_root=True)
        assert (dest / "x" / ("n" * 90)).read_bytes() == b"ok"


@pytest.mark.parametrize("as_root", [True, False])
def test_whiteouts_over_entries_of_the_same_layer_and_repeated_markers(tmp_path, as_root):
    dest, res = extract(tmp_path, [D("etc"), F("etc/a", "1"), WH("etc/a"), WH("etc/a"),
                                   D("opt"), OPQ("opt"), OPQ("opt"), F("etc/b", "x"),
                                   F("etc/b", "y")], as_root=as_root)
    assert (dest / "etc/b").read_text() == "y"
    kinds = {(e.path, e.kind) for e in res.entries}
    assert ("etc/a", FileKind.WHITEOUT) in kinds and ("etc/a", FileKind.FILE) not in kinds
