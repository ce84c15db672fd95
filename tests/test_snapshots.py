"""Snapshot comparison, classification, the report and the `snapshots compare` command."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from reviewbot import snapshot_cli, snapshots
from reviewbot.render import MAX_BODY_CHARS
from reviewbot.snapshots import (
    CompareOptions,
    ImageError,
    SnapshotClass,
    SnapshotEntry,
    SnapshotResult,
    SnapshotStatus,
    compare_dirs,
    decode_png,
    differing_pixels,
    group_of,
    render_report,
)
from tests.golden_files import assert_golden

W, H = 64, 48


# ---- helpers ---------------------------------------------------------------------------


def _page(width: int = W, height: int = H, seed: int = 0) -> NDArray[np.uint8]:
    """A deterministic RGB 'screenshot' with structure (bands and blocks), not noise."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, :, 0] = (np.arange(width) * 255 // max(1, width - 1))[None, :]
    pixels[:, :, 1] = (np.arange(height) * 255 // max(1, height - 1))[:, None]
    pixels[:, :, 2] = 128
    for _ in range(4):
        y, x = rng.integers(0, max(1, height - 8)), rng.integers(0, max(1, width - 8))
        pixels[y : y + 8, x : x + 8] = rng.integers(0, 256, 3, dtype=np.uint8)
    return pixels


def _write(path: Path, pixels: NDArray[np.uint8], *, compress_level: int = 6) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG", compress_level=compress_level)
    return path


def _png_bytes(pixels: NDArray[np.uint8], *, compress_level: int = 6) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims a size, with a tiny IDAT: the shape of a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _pair(tmp_path: Path) -> tuple[Path, Path]:
    base, current = tmp_path / "baseline", tmp_path / "current"
    base.mkdir()
    current.mkdir()
    return base, current


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = snapshot_cli.main(["snapshots", "compare", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _entry(result: SnapshotResult, path: str) -> SnapshotEntry:
    (entry,) = [entry for entry in result.entries if entry.path == path]
    return entry


def _expected_differing(a: NDArray[np.uint8], b: NDArray[np.uint8], limit: int) -> set[int]:
    """The definition, written the slow obvious way: max |Δ| over RGBA > limit."""

    def rgba(x: NDArray[np.uint8]) -> NDArray[np.int32]:
        out = np.full((*x.shape[:2], 4), 255, dtype=np.int32)
        out[:, :, : x.shape[2]] = x
        return out

    ra, rb = rgba(a), rgba(b)
    height, width = max(a.shape[0], b.shape[0]), max(a.shape[1], b.shape[1])
    result = set()
    for y in range(height):
        for x in range(width):
            in_a = y < a.shape[0] and x < a.shape[1]
            in_b = y < b.shape[0] and x < b.shape[1]
            if in_a and in_b:
                if int(np.abs(ra[y, x] - rb[y, x]).max()) > limit:
                    result.add(y * width + x)
            elif in_a or in_b:
                result.add(y * width + x)
    return result


# ---- the distance and the thresholds ---------------------------------------------------


@pytest.mark.parametrize("threshold", [0.0, 0.001, 0.01, 0.02, 0.1, 0.25, 0.5, 0.6, 0.99, 1.0])
def test_channel_limit_matches_the_documented_distance(threshold: float) -> None:
    limit = CompareOptions(threshold=threshold).channel_limit
    for delta in range(256):
        assert (delta > limit) == (delta / 255 > threshold), (threshold, delta)


@pytest.mark.parametrize("channels", [(3, 3), (4, 4), (3, 4), (4, 3)])
@pytest.mark.parametrize("changed_share", [0.02, 0.9])
@pytest.mark.parametrize("limit", [0, 2, 50, 255])
def test_differing_pixels_follows_the_definition(
    channels: tuple[int, int], changed_share: float, limit: int
) -> None:
    rng = np.random.default_rng(limit + int(changed_share * 100))
    a = rng.integers(0, 256, (20, 30, channels[0]), dtype=np.uint8)
    b = a[:, :, : channels[1]].copy() if channels[1] <= channels[0] else None
    if b is None:
        b = np.concatenate([a, np.full((20, 30, 1), 255, dtype=np.uint8)], axis=2)
    # Nudge a share of the pixels by random amounts, small and large.
    picked = rng.random((20, 30)) < changed_share
    nudge = rng.integers(-6, 7, (20, 30, b.shape[2]))
    nudge[rng.random((20, 30)) < 0.3] *= 40
    b = np.clip(b.astype(int) + nudge * picked[:, :, None], 0, 255).astype(np.uint8)
    got = differing_pixels(a, b, limit)
    assert set(got.tolist()) == _expected_differing(a, b, limit)
    assert list(got) == sorted(got)


@pytest.mark.parametrize(
    ("size_a", "size_b"), [((10, 12), (10, 14)), ((12, 10), (10, 12)), ((5, 5), (9, 3))]
)
def test_a_resized_image_differs_where_only_one_image_reaches(
    size_a: tuple[int, int], size_b: tuple[int, int]
) -> None:
    a = _page(*size_a, seed=1)
    b = _page(*size_b, seed=1)
    b[: min(size_a[1], size_b[1]), : min(size_a[0], size_b[0])] = a[
        : min(size_a[1], size_b[1]), : min(size_a[0], size_b[0])
    ]
    got = set(differing_pixels(a, b, 2).tolist())
    assert got == _expected_differing(a, b, 2)
    assert got  # sizes differ, so something does


# ---- groups ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "group"),
    [
        ("tests/home.spec.ts-snapshots/hero-chromium-linux.png", "home.spec.ts"),
        ("home.spec.ts-snapshots/hero.png", "home.spec.ts"),
        ("e2e/nested/cart.spec.js-snapshots/sub/cart-firefox.png", "cart.spec.js"),
        ("__screenshots__/home.spec.ts/hero.png", "home.spec.ts"),
        ("src/__screenshots__/login.test.tsx/form-1.png", "login.test.tsx"),
        ("__snapshots__/profile.spec.ts/avatar.png", "profile.spec.ts"),
        ("checkout/step1.png", "checkout"),
        ("checkout/deep/er/step1.png", "checkout"),
        ("__screenshots__/lonely.png", "__screenshots__"),
        ("-snapshots/x.png", "-snapshots"),
        ("top.png", ""),
    ],
)
def test_group_is_the_test_file_or_the_first_folder(path: str, group: str) -> None:
    assert group_of(path) == group


# ---- decoding untrusted images ---------------------------------------------------------


def test_decode_refuses_an_oversized_header_before_decoding() -> None:
    data = _png_header_only(100_000, 100_000)
    with pytest.raises(ImageError, match=r"too large.*100000×100000"):
        decode_png(data)


def test_decode_turns_pillows_bomb_error_into_a_reason() -> None:
    # Above Pillow's own 2× MAX_IMAGE_PIXELS limit, with our cap lifted to reach Pillow.
    data = _png_header_only(20_000, 10_000)
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_png(data, max_pixels=10**12)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a png at all",
        _png_bytes(_page())[:200],  # truncated
        _png_bytes(_page())[:-30],  # IEND and part of IDAT missing
        b"GIF89a" + b"\0" * 100,
    ],
)
def test_decode_reports_broken_files(data: bytes) -> None:
    with pytest.raises(ImageError):
        decode_png(data)


def test_decode_refuses_a_gif_named_png() -> None:
    buffer = io.BytesIO()
    Image.fromarray(_page()).save(buffer, format="GIF")
    with pytest.raises(ImageError):
        decode_png(buffer.getvalue())


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGB", "RGBA", "I;16"])
def test_decode_handles_every_png_mode(mode: str) -> None:
    image = Image.fromarray(_page()).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    pixels = decode_png(buffer.getvalue())
    assert pixels.shape[:2] == (H, W)
    assert pixels.shape[2] in (3, 4)


# ---- comparing directories -------------------------------------------------------------


def test_identical_and_reencoded_images_are_unchanged(tmp_path: Path) -> None:
    base, current = _pair(tmp_path)
    page = _page()
    _write(base / "a/same.png", page)
    _write(current / "a/same.png", page)
    _write(base / "a/reencoded.png", page, compress_level=9)
    _write(current / "a/reencoded.png", page, compress_level=0)
    assert (base / "a/reencoded.png").read_bytes() != (current / "a/reencoded.png").read_bytes()
    result = compare_dirs(base, current, diff_dir=tmp_path / "diff")
    assert [entry.kind for entry in result.entries] == [SnapshotClass.UNCHANGED] * 2
    assert _entry(result, "a/reencoded.png").diff_pixels == 0
    assert result.status is SnapshotStatus.MATCH
    assert not result.failed
    assert not (tmp_path / "diff").exists() or not any((tmp_path / "diff").rglob("*"))


@pytest.mark.parametrize("max_diff", [0, 1, 5, 100])
def test_an_image_changes_only_above_max_diff_pixels(tmp_path: Path, max_diff: int) -> None:
    base, current = _pair(tmp_path)
    page = _page(120, 90)
    options = CompareOptions(max_diff_pixels=max_diff)
    flat = np.arange(120 * 90)
    for count, name in ((max_diff, "at.png"), (max_diff + 1, "over.png")):
        edited = page.copy()
        edited.reshape(-1, 3)[flat[:count]] ^= 0xFF  # inverted: far above the threshold
        _write(base / name, page)
        _write(current / name, edited)
    result = compare_dirs(base, current, options=options)
    assert _entry(result, "at.png").kind is SnapshotClass.UNCHANGED
    assert _entry(result, "at.png").diff_pixels == max_diff
    over = _entry(result, "over.png")
    assert over.kind is SnapshotClass.CHANGED
    assert over.diff_pixels == max_diff + 1
    assert over.reason is not None and f"{max_diff + 1:,} pixels differ" in over.reason


@pytest.mark.parametrize("threshold", [0.0, 0.01, 0.05, 0.2])
def test_colour_changes_count_only_above_the_threshold(tmp_path: Path, threshold: float) -> None:
    base, current = _pair(tmp_path)
    options = CompareOptions(threshold=threshold)
    page = np.full((H, W, 3), 100, dtype=np.uint8)
    limit = options.channel_limit
    _write(base / "under.png", page)
    _write(current / "under.png", page + np.uint8(limit))  # every pixel moves, within limit
    _write(base / "over.png", page)
    _write(current / "over.png", page + np.uint8(limit + 1))
    result = compare_dirs(base, current, options=options)
    under = _entry(result, "under.png")
    assert under.kind is SnapshotClass.UNCHANGED
    assert under.diff_pixels == 0
    over = _entry(result, "over.png")
    assert over.kind is SnapshotClass.CHANGED
    assert over.diff_pixels == W * H


def test_one_pixel_off_is_tolerated_by_default(tmp_path: Path) -> None:
    base, current = _pair(tmp_path)
    page = _page()
    edited = page.copy()
    edited[5, 7] = 255 - edited[5, 7]
    _write(base / "x.png", page)
    _write(current / "x.png", edited)
    result = compare_dirs(base, current)
    assert _entry(result, "x.png").kind is SnapshotClass.UNCHANGED
    assert _entry(result, "x.png").diff_pixels == 1


def test_a_changed_image_gets_a_diff_image_with_the_changes_in_red(tmp_path: Path) -> None:
    base, current = _pair(tmp_path)
    diff_dir = tmp_path / "diff"
    page = _page(80, 60)
    edited = page.copy()
    edited[10:30, 20:50] = (0, 0, 0) if page[10, 20, 0] > 128 else (255, 255, 255)
    edited[10:30, 20:50, 2] ^= 0x80  # make sure every pixel of the block moved
    _write(base / "home.spec.ts-snapshots/hero-chromium.png", page)
    _write(current / "home.spec.ts-snapshots/hero-chromium.png", edited)
    result = compare_dirs(base, current, diff_dir=diff_dir)
    entry = result.changed[0]
    assert entry.group == "home.spec.ts"
    assert entry.diff_image == "home.spec.ts-snapshots/hero-chromium-diff.png"
    with Image.open(diff_dir / entry.diff_image) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    expected = np.zeros((60, 80), dtype=bool)
    expected[10:30, 20:50] = True
    red = (rgb[:, :, 0] == 255) & (rgb[:, :, 1] == 0) & (rgb[:, :, 2] == 0)
    assert (red == expected).all()
    assert entry.diff_pixels == expected.sum()
    rest = rgb[~expected]
    assert (rest[:, 0] == rest[:, 1]).all() and (rest[:, 1] == rest[:, 2]).all()  # grey
    assert rest.min() >= 191  # faded
    assert result.failed


def test_a_resized_image_is_changed_with_its_sizes(tmp_path: Path) -> None:
    base, current = _pair(tmp_path)
    _write(base / "r.png", _page(40, 30))
    _write(current / "r.png", _page(40, 34))
    result = compare_dirs(base, current, diff_dir=tmp_path / "diff")
    entry = _entry(result, "r.png")
    assert entry.kind is SnapshotClass.CHANGED
    assert entry.baseline_size == (40, 30) and entry.current_size == (40, 34)
    assert entry.reason is not None and "size changed 40×30 → 40×34" in entry.reason
    with Image.open(tmp_path / "diff/r-diff.png") as image:
        assert image.size == (40, 34)


@pytest.mark.parametrize("side", ["baseline", "current"])
@pytest.mark.parametrize(
    "payload",
    [b"garbage", b"\x89PNG\r\n\x1a\n", "truncated", "bomb"],
)
def test_broken_images_are_changed_with_a_reason(
    tmp_path: Path, side: str, payload: bytes | str
) -> None:
    base, current = _pair(tmp_path)
    good = _png_bytes(_page())
    if payload == "truncated":
        broken = good[: len(good) // 2]
    elif payload == "bomb":
        broken = _png_header_only(60_000, 60_000)
    else:
        assert isinstance(payload, bytes)
        broken = payload
    (base / "x.png").write_bytes(broken if side == "baseline" else good)
    (current / "x.png").write_bytes(broken if side == "current" else good)
    result = compare_dirs(base, current, diff_dir=tmp_path / "diff")
    entry = _entry(result, "x.png")
    assert entry.kind is SnapshotClass.CHANGED
    assert entry.reason is not None and entry.reason.startswith(f"{side}: ")
    assert entry.diff_image is None


def test_identical_broken_files_match_byte_for_byte(tmp_path: Path) -> None:
    base, current = _pair(tmp_path)
    (base / "x.png").write_bytes(b"not a png")
    (current / "x.png").write_bytes(b"not a png")
    assert compare_dirs(base, current).entries[0].kind is SnapshotClass.UNCHANGED


def test_other_files_compare_byte_for_byte(tmp_path: Path) -> None:
    base, current = _pair(tmp_path)
    for name, old, new in (
        ("same.txt", b"hello", b"hello"),
        ("longer.json", b"{}", b'{"a": 1}'),
        ("same-size.bin", b"abcd", b"abce"),
        ("empty.dat", b"", b""),
    ):
        (base / name).write_bytes(old)
        (current / name).write_bytes(new)
    result = compare_dirs(base, current)
    kinds = {entry.path: entry.kind for entry in result.entries}
    assert kinds == {
        "same.txt": SnapshotClass.UNCHANGED,
        "longer.json": SnapshotClass.CHANGED,
        "same-size.bin": SnapshotClass.CHANGED,
        "empty.dat": SnapshotClass.UNCHANGED,
    }
    assert _entry(result, "longer.json").reason == "content differs (2 → 8 bytes)"


def test_large_pngs_are_compared_by_bytes_only(tmp_path: Path) -> None:
    base, current = _pair(tmp_path)
    small = CompareOptions(max_png_bytes=100)
    _write(base / "same.png", _page())
    _write(current / "same.png", _page())
    _write(base / "diff.png", _page(seed=1))
    _write(current / "diff.png", _page(seed=2))
    result = compare_dirs(base, current, options=small)
    assert _entry(result, "same.png").kind is SnapshotClass.UNCHANGED
    reason = _entry(result, "diff.png").reason
    assert reason is not None and "too large" in reason


def test_new_removed_and_status(tmp_path: Path) -> None:
    base, current = _pair(tmp_path)
    _write(base / "kept/a.png", _page())
    _write(current / "kept/a.png", _page())
    _write(base / "gone/b.png", _page())
    _write(current / "fresh/c.png", _page())
    result = compare_dirs(base, current)
    assert [entry.path for entry in result.removed] == ["gone/b.png"]
    assert [entry.path for entry in result.new] == ["fresh/c.png"]
    assert result.status is SnapshotStatus.CHANGED  # a removal alone fails
    acknowledged = compare_dirs(base, current, acknowledged=True)
    assert acknowledged.status is SnapshotStatus.ACKNOWLEDGED
    assert not acknowledged.failed


def test_no_baselines_means_all_new(tmp_path: Path) -> None:
    base, current = _pair(tmp_path)
    _write(current / "x/a.png", _page())
    _write(current / "b.png", _page())
    result = compare_dirs(base, current)
    assert result.status is SnapshotStatus.ALL_NEW
    assert not result.failed
    assert compare_dirs(base, base).status is SnapshotStatus.MATCH  # nothing at all


@pytest.mark.parametrize(
    ("kinds", "acknowledged", "status"),
    [
        ((), False, SnapshotStatus.MATCH),
        ((SnapshotClass.UNCHANGED,), False, SnapshotStatus.MATCH),
        ((SnapshotClass.UNCHANGED, SnapshotClass.NEW), False, SnapshotStatus.MATCH),
        ((SnapshotClass.NEW,), False, SnapshotStatus.ALL_NEW),
        ((SnapshotClass.NEW,), True, SnapshotStatus.ALL_NEW),
        ((SnapshotClass.CHANGED,), False, SnapshotStatus.CHANGED),
        ((SnapshotClass.REMOVED,), False, SnapshotStatus.CHANGED),
        ((SnapshotClass.REMOVED, SnapshotClass.NEW), True, SnapshotStatus.ACKNOWLEDGED),
        ((SnapshotClass.CHANGED, SnapshotClass.UNCHANGED), True, SnapshotStatus.ACKNOWLEDGED),
    ],
)
def test_status_rules(
    kinds: tuple[SnapshotClass, ...], acknowledged: bool, status: SnapshotStatus
) -> None:
    entries = tuple(SnapshotEntry(f"f{i}.png", kind, "") for i, kind in enumerate(kinds))
    result = SnapshotResult(entries, acknowledged=acknowledged)
    assert result.status is status
    assert result.failed == (status is SnapshotStatus.CHANGED)


def test_symlinks_inside_are_followed_and_escaping_ones_are_not(tmp_path: Path) -> None:
    base, current = _pair(tmp_path)
    page = _page()
    outside = _write(tmp_path / "outside/secret.png", page)
    _write(base / "escape.png", page)
    (current / "escape.png").symlink_to(outside)  # same pixels, still not read
    _write(base / "inner.png", page)
    _write(current / "real/inner.png", page)
    (current / "inner.png").symlink_to(current / "real/inner.png")
    (current / "outdir").symlink_to(tmp_path / "outside", target_is_directory=True)
    (current / "loop").symlink_to(current, target_is_directory=True)
    (current / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    result = compare_dirs(base, current)
    escape = _entry(result, "escape.png")
    assert escape.kind is SnapshotClass.CHANGED
    assert escape.reason is not None and "outside the snapshot directory" in escape.reason
    assert _entry(result, "inner.png").kind is SnapshotClass.UNCHANGED
    assert not any(entry.path.startswith("outdir/") for entry in result.entries)
    assert _entry(result, "outdir").reason is not None
    assert _entry(result, "dangling.png").reason == "broken symlink"
    assert not any(entry.path.startswith("loop/loop") for entry in result.entries)


def test_special_files_are_skipped_with_a_note(tmp_path: Path) -> None:
    base, current = _pair(tmp_path)
    os.mkfifo(current / "pipe.png")
    result = compare_dirs(base, current)
    assert result.entries == ()
    assert any("special file" in note for note in result.notes)


def test_the_diff_dir_inside_the_current_dir_is_not_compared(tmp_path: Path) -> None:
    base, current = _pair(tmp_path)
    _write(base / "a.png", _page(seed=1))
    _write(current / "a.png", _page(seed=2))
    diff_dir = current / "diffs"
    first = compare_dirs(base, current, diff_dir=diff_dir)
    assert (diff_dir / "a-diff.png").exists()
    second = compare_dirs(base, current, diff_dir=diff_dir)
    assert [entry.path for entry in second.entries] == [entry.path for entry in first.entries]


def test_too_many_files_is_an_error(tmp_path: Path) -> None:
    base, current = _pair(tmp_path)
    for index in range(4):
        (current / f"{index}.txt").write_text("x")
    with pytest.raises(snapshots.SnapshotError, match="more than 3 files"):
        compare_dirs(base, current, options=CompareOptions(max_files=3))


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_results_do_not_depend_on_worker_count(tmp_path: Path, workers: int) -> None:
    base, current = _pair(tmp_path)
    for index in range(12):
        _write(base / f"g{index % 3}/s{index}.png", _page(seed=index))
        _write(current / f"g{index % 3}/s{index}.png", _page(seed=index + (index % 4 == 0)))
    serial = compare_dirs(base, current, workers=1)
    assert compare_dirs(base, current, workers=workers) == serial
    assert [entry.path for entry in serial.entries] == sorted(e.path for e in serial.entries)


@pytest.mark.parametrize(
    "settings",
    [{"threshold": 1.5}, {"threshold": "0.1"}, {"max_diff_pixels": -1}, {"max_diff_pixels": 1.5}],
)
def test_options_from_settings_refuse_bad_values(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CompareOptions.from_mapping(settings)


def test_options_from_settings() -> None:
    options = CompareOptions.from_mapping({"threshold": 0.2, "max_diff_pixels": 7})
    assert (options.threshold, options.max_diff_pixels) == (0.2, 7)
    assert CompareOptions.from_mapping({}) == CompareOptions()


# ---- the report ------------------------------------------------------------------------


def _sample(acknowledged: bool = False) -> SnapshotResult:
    changed = SnapshotClass.CHANGED
    return SnapshotResult(
        (
            SnapshotEntry(
                "tests/home.spec.ts-snapshots/hero-chromium-linux.png",
                changed,
                "home.spec.ts",
                reason="1,234 pixels differ (0.13%)",
                diff_pixels=1234,
                total_pixels=921_600,
                diff_image="tests/home.spec.ts-snapshots/hero-chromium-linux-diff.png",
            ),
            SnapshotEntry(
                "tests/home.spec.ts-snapshots/footer-chromium-linux.png",
                changed,
                "home.spec.ts",
                reason="size changed 1280×720 → 1280×800; 102,400 pixels differ (10.00%)",
                diff_image="tests/home.spec.ts-snapshots/footer-chromium-linux-diff.png",
            ),
            SnapshotEntry(
                "__screenshots__/cart.spec.ts/empty.png",
                changed,
                "cart.spec.ts",
                reason="current: not a readable PNG (image file is truncated)",
            ),
            SnapshotEntry("checkout/pay.png", SnapshotClass.NEW, "checkout"),
            SnapshotEntry("legacy/old.png", SnapshotClass.REMOVED, "legacy"),
            SnapshotEntry("login/form.png", SnapshotClass.UNCHANGED, "login"),
            SnapshotEntry("top.png", SnapshotClass.UNCHANGED, ""),
        ),
        acknowledged=acknowledged,
    )


def test_golden_changed_report() -> None:
    text = render_report(
        _sample(),
        head_sha="0123456789abcdef0123456789abcdef01234567",
        diff_base_url="https://ci.example.org/artifacts/run 42/diffs/",
    )
    assert_golden("snapshot_report_changed.md", text)


def test_golden_acknowledged_report() -> None:
    text = render_report(_sample(acknowledged=True), head_sha="abc1234", diff_base_url=None)
    assert_golden("snapshot_report_acknowledged.md", text)


def test_golden_all_new_report() -> None:
    result = SnapshotResult(
        (
            SnapshotEntry("a.spec.ts-snapshots/one.png", SnapshotClass.NEW, "a.spec.ts"),
            SnapshotEntry("b/two.png", SnapshotClass.NEW, "b"),
        )
    )
    assert_golden(
        "snapshot_report_all_new.md", render_report(result, head_sha=None, diff_base_url=None)
    )


def test_golden_match_report() -> None:
    result = SnapshotResult(
        (SnapshotEntry("a/one.png", SnapshotClass.UNCHANGED, "a"),),
        options=CompareOptions(threshold=0.05, max_diff_pixels=2500),
        notes=("Current: Skipped 1 special file(s) (sockets, pipes, devices).",),
    )
    text = render_report(result, head_sha="deadbeef", diff_base_url=None)
    assert_golden("snapshot_report_match.md", text)


def test_report_structure() -> None:
    text = render_report(_sample(), head_sha="abc1234", diff_base_url="https://x.test/d")
    assert text.startswith(snapshots.MARKER + "\n")
    assert "📸 Snapshot Test Report" in text
    assert "❌" in text and "Head commit: abc1234" in text
    assert "| 3 | 1 | 1 | 2 | 7 |" in text
    for title, count in (("🔴 Changed", 3), ("🆕 New", 1), ("🗑️ Removed", 1), ("✅ Unchanged", 2)):
        assert f"<summary>{title} snapshots ({count})</summary>" in text
    assert text.count("<details") == text.count("</details>") == 4
    # Links only for entries that have a diff image, with the path URL-encoded.
    assert text.count("[diff](") == 2
    assert "https://x.test/d/tests/home.spec.ts-snapshots/hero-chromium-linux-diff.png" in text


def test_empty_sections_are_left_out() -> None:
    result = SnapshotResult((SnapshotEntry("a.png", SnapshotClass.UNCHANGED, ""),))
    text = render_report(result, head_sha=None, diff_base_url=None)
    assert "Changed snapshots" not in text and "New snapshots" not in text
    assert "Removed snapshots" not in text and "Unchanged snapshots (1)" in text
    assert "Head commit" not in text
    assert "✅ **All snapshots match the main branch baselines**" in text


@pytest.mark.parametrize(
    "name",
    [
        "<img src=x onerror=alert(1)>.png",
        "@octocat/ping.png",
        "[click](https://evil.test).png",
        "**bold**_em_`code`.png",
        "line\nbreak.png",
        "<!-- snapshot-test-report -->.png",
    ],
)
def test_file_names_cannot_inject_markdown(name: str) -> None:
    result = SnapshotResult(
        (SnapshotEntry(name, SnapshotClass.CHANGED, name, reason=f"because {name}"),)
    )
    text = render_report(result, head_sha="abc1234", diff_base_url=None)
    body = text.removeprefix(snapshots.MARKER)
    assert "<img" not in body and "<!--" not in body and "<b>" not in body
    assert "@octocat" not in body  # mention broken by a zero-width space
    assert not re.search(r"(?<!\\)\]\(", body)  # no unescaped "](" opens a link
    assert "**bold**" not in body
    assert "line\nbreak" not in body


def test_a_head_that_is_not_a_sha_is_shown_as_code() -> None:
    text = render_report(_sample(), head_sha="main`; <b>@x", diff_base_url=None)
    assert "Head commit: ``main`; <b>@x``" in text


def test_bad_diff_base_urls_are_refused() -> None:
    for url in ("javascript:alert(1)", "ftp://x.test/a", "https://x.test/?q=1", "/relative"):
        with pytest.raises(ValueError):
            render_report(_sample(), head_sha=None, diff_base_url=url)


def test_diff_base_url_cannot_break_out_of_the_link() -> None:
    text = render_report(_sample(), head_sha=None, diff_base_url="https://x.test/a b)<c>")
    assert "https://x.test/a%20b%29%3Cc%3E/tests/" in text


def test_a_huge_report_fits_in_a_github_comment() -> None:
    entries = tuple(
        SnapshotEntry(
            f"group{index % 50}/{'very-long-snapshot-name-' * 4}{index}.png",
            kind,
            f"group{index % 50}",
            reason="9,999 pixels differ (1.00%)" if kind is SnapshotClass.CHANGED else None,
            diff_image=f"d/{index}-diff.png" if kind is SnapshotClass.CHANGED else None,
        )
        for index in range(8000)
        for kind in (SnapshotClass.CHANGED, SnapshotClass.UNCHANGED)
    )
    text = render_report(
        SnapshotResult(entries), head_sha="abc1234", diff_base_url="https://x.test/d"
    )
    assert len(text) <= MAX_BODY_CHARS
    assert "| 8000 | 0 | 0 | 8000 | 16000 |" in text
    assert "more." in text


# ---- the command -----------------------------------------------------------------------


def _scenario(tmp_path: Path) -> tuple[Path, Path]:
    base, current = _pair(tmp_path)
    page = _page(100, 80)
    _write(base / "tests/home.spec.ts-snapshots/hero-chromium-linux.png", page)
    edited = page.copy()
    edited[0:20, 0:20] ^= 0xFF
    _write(current / "tests/home.spec.ts-snapshots/hero-chromium-linux.png", edited)
    _write(base / "__screenshots__/cart.spec.ts/same.png", page)
    _write(current / "__screenshots__/cart.spec.ts/same.png", page)
    _write(current / "__screenshots__/cart.spec.ts/fresh.png", page)
    return base, current


def test_cli_markdown_fails_on_changes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, current = _scenario(tmp_path)
    code, out, err = _cli(
        capsys,
        "--baseline",
        str(base),
        "--current",
        str(current),
        "--diff-dir",
        str(tmp_path / "diffs"),
        "--head",
        "abc1234",
        "--diff-base-url",
        "https://ci.test/run/1",
    )
    assert code == 1, err
    assert err == ""
    assert out.startswith(snapshots.MARKER)
    assert "❌ **Snapshots differ" in out and "`--acknowledged`" in out
    assert "Head commit: abc1234" in out
    assert "**home.spec.ts**" in out and "**cart.spec.ts**" in out
    link = "https://ci.test/run/1/tests/home.spec.ts-snapshots/hero-chromium-linux-diff.png"
    assert f"[diff]({link})" in out
    assert (tmp_path / "diffs/tests/home.spec.ts-snapshots/hero-chromium-linux-diff.png").exists()


def test_cli_acknowledged_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, current = _scenario(tmp_path)
    code, out, _ = _cli(
        capsys, "--baseline", str(base), "--current", str(current), "--acknowledged"
    )
    assert code == 0
    assert "✅ **Snapshot changes acknowledged**: 1 changed, 0 removed." in out


def test_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, current = _scenario(tmp_path)
    (base / "gone.txt").write_text("bye")
    code, out, _ = _cli(
        capsys, "--baseline", str(base), "--current", str(current), "--format", "json"
    )
    assert code == 1
    payload = json.loads(out)
    assert payload["status"] == "changed"
    assert payload["changed"] == ["tests/home.spec.ts-snapshots/hero-chromium-linux.png"]
    assert payload["new"] == ["__screenshots__/cart.spec.ts/fresh.png"]
    assert payload["removed"] == ["gone.txt"]
    assert payload["unchanged"] == 1
    assert payload["total"] == 4
    (detail,) = [d for d in payload["details"] if d["class"] == "changed"]
    assert detail["diff_pixels"] == 400
    assert detail["group"] == "home.spec.ts"


@pytest.mark.parametrize(
    ("setup", "status", "code"),
    [
        ("match", "match", 0),
        ("all_new", "all_new", 0),
        ("removed", "changed", 1),
        ("removed_ack", "acknowledged", 0),
    ],
)
def test_cli_statuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, status: str, code: int
) -> None:
    base, current = _pair(tmp_path)
    if setup != "all_new":
        _write(base / "a.png", _page())
    if setup != "removed" and setup != "removed_ack":
        _write(current / "a.png", _page())
    extra = ["--acknowledged"] if setup.endswith("_ack") else []
    got, out, _ = _cli(
        capsys, "--baseline", str(base), "--current", str(current), "--format", "json", *extra
    )
    assert (got, json.loads(out)["status"]) == (code, status)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required"),
        (["--baseline", "{missing}", "--current", "{current}"], "--baseline directory not found"),
        (["--baseline", "{base}", "--current", "{missing}"], "--current directory not found"),
        (["--baseline", "{file}", "--current", "{current}"], "--baseline directory not found"),
        (["--baseline", "{base}", "--current", "{current}", "--threshold", "abc"], "not a number"),
        (["--baseline", "{base}", "--current", "{current}", "--threshold", "1.5"], "between 0"),
        (["--baseline", "{base}", "--current", "{current}", "--threshold", "nan"], "between 0"),
        (["--baseline", "{base}", "--current", "{current}", "--max-diff-pixels", "-1"], "negative"),
        (["--baseline", "{base}", "--current", "{current}", "--max-diff-pixels", "x"], "integer"),
        (["--baseline", "{base}", "--current", "{current}", "--format", "xml"], "invalid choice"),
        (["--baseline", "{base}", "--current", "{current}", "--diff-base-url", "x"], "http"),
        (["--baseline", "{base}", "--current", "{current}", "--diff-dir", "{file}/d"], "diff-dir"),
        (["--baseline", "{base}", "--current", "{current}", "--diff-dir", "{current}"], "itself"),
        (["--baseline", "{base}", "--current", "{current}", "--bogus"], "unrecognized"),
    ],
)
def test_cli_usage_errors_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    base, current = _pair(tmp_path)
    (tmp_path / "file").write_text("x")
    names = {
        "base": base,
        "current": current,
        "missing": tmp_path / "missing",
        "file": tmp_path / "file",
    }
    code, out, err = _cli(capsys, *(arg.format(**names) for arg in argv))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n")
    assert message in err
    assert "Traceback" not in err


def test_cli_help_and_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert snapshot_cli.main(["snapshots", "compare", "--help"]) == 0
    assert "--max-diff-pixels" in capsys.readouterr().out
    assert snapshot_cli.main(["snapshots"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_threshold_and_max_diff_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, current = _pair(tmp_path)
    page = np.full((H, W, 3), 50, dtype=np.uint8)
    _write(base / "a.png", page)
    _write(current / "a.png", page + np.uint8(20))  # 20/255 ≈ 0.078 on every pixel
    dirs = ["--baseline", str(base), "--current", str(current), "--format", "json"]
    assert _cli(capsys, *dirs)[0] == 1
    assert _cli(capsys, *dirs, "--threshold", "0.08")[0] == 0
    assert _cli(capsys, *dirs, "--max-diff-pixels", str(W * H))[0] == 0
    assert _cli(capsys, *dirs, "--max-diff-pixels", str(W * H - 1))[0] == 1


def test_cli_corrupt_image_is_reported_not_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, current = _pair(tmp_path)
    _write(base / "a.png", _page())
    (current / "a.png").write_bytes(_png_bytes(_page())[:100])
    code, out, err = _cli(capsys, "--baseline", str(base), "--current", str(current))
    assert code == 1 and err == ""
    assert "current: not a readable PNG" in out
