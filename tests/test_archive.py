"""Safe extraction of untrusted zip archives: bounds, hostile names, broken archives."""

from __future__ import annotations

import io
import os
import stat
import warnings
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from reviewbot.archive import (
    ArchiveError,
    ArchiveLimits,
    Extracted,
    extract_zip,
    member_path,
)


def _zip(
    *entries: tuple[str | zipfile.ZipInfo, bytes], method: int = zipfile.ZIP_DEFLATED
) -> bytes:
    """An archive with exactly these entries (duplicates included, as an attacker may)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name" is the point
        with zipfile.ZipFile(buffer, "w", compression=method) as archive:
            for name, data in entries:
                archive.writestr(name, data)
    return buffer.getvalue()


def _info(name: str, file_type: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: the high 16 bits of external_attr are st_mode
    info.external_attr = (file_type | 0o644) << 16
    return info


def _set_flags(data: bytes, name: str, flags: int) -> bytes:
    """Set general-purpose flag bits on ``name``'s central directory record.

    zipfile's writer resets the flags, so an "encrypted" entry is made by patching.
    """
    patched = bytearray(data)
    start = 0
    while (start := patched.find(b"PK\x01\x02", start)) >= 0:
        length = int.from_bytes(patched[start + 28 : start + 30], "little")
        if patched[start + 46 : start + 46 + length] == name.encode():
            value = int.from_bytes(patched[start + 8 : start + 10], "little") | flags
            patched[start + 8 : start + 10] = value.to_bytes(2, "little")
        start += 4
    return bytes(patched)


def _tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


# ---- names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.png", "a.png"),
        ("dir/sub/a.png", "dir/sub/a.png"),
        ("./a.png", "a.png"),
        ("a//b.png", "a/b.png"),
        ("a/./b.png", "a/b.png"),
        ("dir\\a.png", "dir/a.png"),
        ("..a.png", "..a.png"),
        ("a..b/c.png", "a..b/c.png"),
        ("...", "..."),
        ("ab:c.png", "ab:c.png"),  # a colon past a drive letter's place is an ordinary name
        ("dir/", "dir"),
    ],
)
def test_safe_names_map_to_a_relative_path(name: str, expected: str) -> None:
    assert member_path(name) == PurePosixPath(expected)


@pytest.mark.parametrize("name", ["", ".", "./", ".//", "././"])
def test_names_of_the_root_itself_have_no_path(name: str) -> None:
    assert member_path(name) is None


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../x.png", "outside"),
        ("..", "outside"),
        ("a/../../x.png", "outside"),
        ("a/b/../../../x.png", "outside"),
        ("a/../b.png", "outside"),  # never resolved: any ".." is refused
        ("..\\x.png", "outside"),
        ("a\\..\\..\\x.png", "outside"),
        ("/etc/passwd", "absolute"),
        ("//server/share/x.png", "absolute"),
        ("\\x.png", "absolute"),
        ("\\\\server\\share\\x.png", "absolute"),
        ("C:/x.png", "drive letter"),
        ("C:x.png", "drive letter"),
        ("a:b.png", "drive letter"),
        ("c:\\windows\\x.png", "drive letter"),
        ("a.png\x00../../x", "NUL"),
    ],
)
def test_hostile_names_are_refused(name: str, reason: str) -> None:
    with pytest.raises(ArchiveError, match=reason):
        member_path(name)


# ---- extraction --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
)
def test_files_are_unpacked_with_their_folders(dest: Path, method: int) -> None:
    files = {
        "a.png": b"\x89PNG first",
        "tests/home.spec.ts-snapshots/hero.png": os.urandom(3000),
        "deep/er/still/c.txt": b"z" * 10_000,
        "empty.bin": b"",
    }
    data = _zip(("tests/", b""), *files.items(), method=method)

    extracted = extract_zip(data, dest)

    assert _tree(dest) == files
    assert extracted == Extracted(files=4, bytes=sum(len(v) for v in files.values()))
    for path in dest.rglob("*"):
        if path.is_file():
            # Never the archive's modes: no setuid, no executable snapshots.
            assert stat.S_IMODE(path.stat().st_mode) & 0o7133 == 0


def test_names_are_normalised_before_writing(dest: Path) -> None:
    data = _zip(("./a.png", b"1"), ("x//y/./b.png", b"2"), ("win\\c.png", b"3"))
    extract_zip(data, dest)
    assert _tree(dest) == {"a.png": b"1", "x/y/b.png": b"2", "win/c.png": b"3"}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../x.png", "leads outside"),
        ("../../x.png", "leads outside"),
        ("sub/../../x.png", "leads outside"),
        ("/tmp/x.png", "absolute path"),
        ("C:/x.png", "drive letter"),
        ("..\\x.png", "leads outside"),
    ],
)
def test_a_hostile_entry_refuses_the_whole_archive_before_writing(
    tmp_path: Path, dest: Path, name: str, reason: str
) -> None:
    # The hostile entry comes last: the good ones before it must not be written either.
    data = _zip(("good/a.png", b"ok"), ("b.png", b"ok"), (name, b"evil"))
    with pytest.raises(ArchiveError, match=reason) as caught:
        extract_zip(data, dest)
    assert repr(name) in str(caught.value)
    assert list(dest.iterdir()) == []
    assert not any(path.name == "x.png" for path in tmp_path.rglob("*"))


def test_a_nul_byte_in_a_name_is_refused(dest: Path) -> None:
    # zipfile's own writer cuts names at NUL, so the bytes are patched in afterwards.
    data = _zip(("aQQb.png", b"x")).replace(b"aQQb.png", b"a\x00/b.png")
    with pytest.raises(ArchiveError, match="NUL"):
        extract_zip(data, dest)
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize(
    ("file_type", "flag_bits", "reason"),
    [
        (stat.S_IFLNK, 0, "symlink"),
        (stat.S_IFIFO, 0, "special file"),
        (stat.S_IFCHR, 0, "special file"),
        (stat.S_IFREG, 0x1, "encrypted"),
    ],
)
def test_links_special_files_and_encrypted_entries_are_refused(
    dest: Path, file_type: int, flag_bits: int, reason: str
) -> None:
    hostile = _info("link.png", file_type)
    data = _set_flags(
        _zip(("a.png", b"ok"), (hostile, b"../../../etc/passwd")), "link.png", flag_bits
    )
    with pytest.raises(ArchiveError, match=reason):
        extract_zip(data, dest)
    assert list(dest.iterdir()) == []


def test_unix_regular_files_and_folders_are_fine(dest: Path) -> None:
    data = _zip((_info("sub/", stat.S_IFDIR), b""), (_info("sub/a.png", stat.S_IFREG), b"1"))
    extract_zip(data, dest)
    assert _tree(dest) == {"sub/a.png": b"1"}


@pytest.mark.parametrize(
    "names",
    [
        ("a.png", "a.png"),
        ("a.png", "./a.png"),
        ("d/a.png", "d//a.png"),
        ("d/a.png", "d\\a.png"),
    ],
)
def test_duplicate_entries_are_refused(dest: Path, names: tuple[str, str]) -> None:
    data = _zip((names[0], b"first"), (names[1], b"second"))
    with pytest.raises(ArchiveError, match="more than once"):
        extract_zip(data, dest)
    assert list(dest.iterdir()) == []


def test_a_file_and_a_folder_of_the_same_name_are_refused(dest: Path) -> None:
    with pytest.raises(ArchiveError, match="cannot be unpacked"):
        extract_zip(_zip(("a", b"file"), ("a/b.png", b"inside")), dest)


def test_existing_links_in_the_destination_are_never_written_through(
    tmp_path: Path, dest: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.png").write_bytes(b"precious")
    (dest / "a.png").symlink_to(outside / "victim.png")
    (dest / "sub").symlink_to(outside)

    with pytest.raises(ArchiveError, match="cannot be unpacked"):
        extract_zip(_zip(("a.png", b"evil")), dest)
    with pytest.raises(ArchiveError, match="leads outside"):
        extract_zip(_zip(("sub/new.png", b"evil")), dest)

    assert (outside / "victim.png").read_bytes() == b"precious"
    assert sorted(path.name for path in outside.iterdir()) == ["victim.png"]


# ---- bounds ------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [0, 1, 5])
def test_file_count_is_bounded(dest: Path, extra: int) -> None:
    limit = 5
    count = limit + extra
    data = _zip(*((f"f{i}.png", b"x") for i in range(count)))
    limits = ArchiveLimits(max_files=limit)
    if extra == 0:
        assert extract_zip(data, dest, limits).files == limit
    else:
        with pytest.raises(ArchiveError, match="more than 5 files"):
            extract_zip(data, dest, limits)
        assert list(dest.iterdir()) == []


def test_folder_entries_are_bounded_too(dest: Path) -> None:
    data = _zip(*((f"d{i}/", b"") for i in range(11)))
    with pytest.raises(ArchiveError, match="11 entries"):
        extract_zip(data, dest, ArchiveLimits(max_files=5))


def test_a_huge_index_is_refused_before_zipfile_reads_it(dest: Path) -> None:
    # 3,000 empty entries: tiny to store, but far more index than 10 files can need.
    data = _zip(*((f"{i:040d}.png", b"") for i in range(3000)), method=zipfile.ZIP_STORED)
    limits = ArchiveLimits(max_files=10)
    assert len(data) < limits.max_archive_bytes
    with pytest.raises(ArchiveError, match="index"):
        extract_zip(data, dest, limits)


def test_archive_size_is_bounded(dest: Path) -> None:
    data = _zip(("a.bin", os.urandom(5000)), method=zipfile.ZIP_STORED)
    assert extract_zip(data, dest, ArchiveLimits(max_archive_bytes=len(data))).files == 1
    with pytest.raises(ArchiveError, match="over the limit"):
        extract_zip(data, dest, ArchiveLimits(max_archive_bytes=len(data) - 1))


def test_unpacked_size_is_bounded_before_anything_is_written(dest: Path) -> None:
    # A zip bomb in miniature: 4 MB of zeros in a few kilobytes.
    data = _zip(("small.png", b"ok"), ("bomb.bin", bytes(4 * 1024 * 1024)))
    assert len(data) < 20_000
    with pytest.raises(ArchiveError, match="unpacks to more than"):
        extract_zip(data, dest, ArchiveLimits(max_unpacked_bytes=1024 * 1024))
    assert list(dest.iterdir()) == []
    # Exactly at the limit is fine.
    assert extract_zip(data, dest, ArchiveLimits(max_unpacked_bytes=4 * 1024 * 1024 + 2)).files


@pytest.mark.parametrize("value", [0, -1, True, 1.5])
def test_limits_must_be_positive_integers(value: object) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        ArchiveLimits(max_files=value)  # type: ignore[arg-type]


# ---- broken archives ---------------------------------------------------------------------


def _corrupted_payload() -> bytes:
    data = bytearray(_zip(("a.bin", os.urandom(2000) * 4)))
    # Flip bytes in the middle of the compressed data (after the 30-byte header and name).
    for offset in range(200, 260):
        data[offset] ^= 0xFF
    return bytes(data)


def _bad_utf8_name() -> bytes:
    # zipfile marks a non-ASCII name as UTF-8; the patched bytes are not UTF-8 at all.
    return _zip(("é.png", b"x")).replace("é".encode(), b"\xff\xfe")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not a readable zip"),
        (b"hello, not a zip", "not a readable zip"),
        (_zip(("a.png", b"x" * 100))[:-10], "not a readable zip"),
        (_corrupted_payload(), "corrupt|not a readable zip"),
        (_bad_utf8_name(), "UTF-8"),
    ],
)
def test_broken_archives_are_an_archive_error(dest: Path, data: bytes, reason: str) -> None:
    with pytest.raises(ArchiveError, match=reason):
        extract_zip(data, dest)


def test_a_wrong_crc_is_caught(dest: Path) -> None:
    data = bytearray(_zip(("a.txt", b"hello world"), method=zipfile.ZIP_STORED))
    offset = data.index(b"hello world")
    data[offset] = ord("j")
    with pytest.raises(ArchiveError, match="CRC"):
        extract_zip(bytes(data), dest)


def test_long_names_are_shortened_in_messages(dest: Path) -> None:
    name = "../" + "x" * 5000
    with pytest.raises(ArchiveError) as caught:
        extract_zip(_zip((name, b"1")), dest)
    assert len(str(caught.value)) < 300
