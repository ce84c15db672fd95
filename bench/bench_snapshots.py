"""Benchmark the snapshot comparison: pairs per second and peak RSS.

Generates N pairs of 1280×720 UI-like screenshots in a temp dir (a share of them changed),
then compares them in a fresh process per configuration so each peak RSS is the
comparison's own. Two kinds of unchanged pairs are measured:

* ``bytes``: unchanged screenshots are byte-identical (what a deterministic renderer gives);
  the comparison skips decoding.
* ``reencode``: unchanged screenshots hold the same pixels in different bytes, so every pair
  is decoded and compared pixel by pixel (the worst case).

Run: ``.venv/bin/python bench/bench_snapshots.py [--pairs 300] [--workers 1,2]``
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from PIL import Image, ImageDraw

# Run as a script from a checkout: make the package importable in the spawned workers too.
PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)
if PROJECT_ROOT not in sys.path:
    sys.path.insert(0, PROJECT_ROOT)

WIDTH, HEIGHT = 1280, 720


def _screenshot(seed: int) -> Image.Image:
    """A page-like image: header, sidebar, cards with text, a gradient banner."""
    rng = random.Random(seed)
    image = Image.new("RGB", (WIDTH, HEIGHT), (248, 249, 251))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, WIDTH, 64), fill=(rng.randrange(20, 60), 40, 90))
    draw.text((24, 22), f"Dashboard {seed}", fill=(255, 255, 255))
    draw.rectangle((0, 64, 220, HEIGHT), fill=(236, 238, 242))
    for row in range(12):
        draw.text((24, 90 + row * 40), f"Menu item {rng.randrange(1000)}", fill=(60, 60, 70))
    for band in range(200):  # a gradient banner, so not everything is flat colour
        shade = 120 + band // 2
        draw.line((240 + band * 5, 84, 240 + band * 5 + 4, 84), fill=(shade, 90, 200))
    draw.rectangle((240, 84, WIDTH - 20, 200), outline=(200, 200, 210))
    for card in range(6):
        x = 240 + (card % 3) * 340
        y = 220 + (card // 3) * 240
        draw.rounded_rectangle((x, y, x + 320, y + 220), radius=8, fill=(255, 255, 255))
        for line in range(8):
            words = " ".join(f"w{rng.randrange(10_000)}" for _ in range(6))
            draw.text((x + 16, y + 16 + line * 24), words, fill=(40, 40, 50))
    return image


def generate(root: str, indices: range, changed_share: float, reencode: bool) -> int:
    """Write baseline/ and current/ under root; returns how many pairs were changed."""
    base_dir = Path(root) / "baseline"
    current_dir = Path(root) / "current"
    changed = 0
    step = max(1, round(1 / changed_share)) if changed_share > 0 else 0
    for index in indices:
        rel = Path(f"spec{index % 30:02d}.spec.ts-snapshots") / f"shot{index:04d}-chromium.png"
        (base_dir / rel.parent).mkdir(parents=True, exist_ok=True)
        (current_dir / rel.parent).mkdir(parents=True, exist_ok=True)
        image = _screenshot(index)
        image.save(base_dir / rel, compress_level=6)
        if step and index % step == 0:
            changed += 1
            draw = ImageDraw.Draw(image)
            draw.rectangle((600, 300, 900, 380), fill=(255, 200, 0))  # 24k px: a real change
            image.save(current_dir / rel, compress_level=6)
        elif reencode:
            image.save(current_dir / rel, compress_level=1)  # same pixels, other bytes
        else:
            shutil.copyfile(base_dir / rel, current_dir / rel)
    return changed


def measure(root: str, workers: int) -> dict[str, float]:
    """Runs in a fresh process: compare, sampling peak RSS along the way."""
    from reviewbot import snapshots

    options = snapshots.CompareOptions()
    diff_dir = Path(root) / f"diff-{workers}"
    rss_start = _peak_rss_mib()
    listed = snapshots.scan(Path(root) / "baseline", Path(root) / "current", options=options)
    started = time.perf_counter()
    cpu_started = _cpu_seconds()
    samples: dict[str, float] = {}
    changed = 0
    total = len(listed.pairs)
    for done, entry in enumerate(
        snapshots.compare_scan(listed, options=options, diff_dir=diff_dir, workers=workers), 1
    ):
        changed += entry.kind is snapshots.SnapshotClass.CHANGED
        if done in (max(1, total // 10), total // 2, total):
            samples[f"rss_after_{done}"] = _peak_rss_mib()
    elapsed = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_started
    return {
        "cpu_ms_per_pair": cpu * 1000 / total,
        "pairs": total,
        "changed": changed,
        "seconds": elapsed,
        "pairs_per_second": total / elapsed,
        "rss_before": rss_start,
        **samples,
    }


def _cpu_seconds() -> float:
    # CPU time, unlike wall time, does not depend on what else runs on the machine.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--changed", type=float, default=0.10)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--mode", choices=("bytes", "reencode", "both"), default="both")
    args = parser.parse_args()
    modes = ("bytes", "reencode") if args.mode == "both" else (args.mode,)
    spawn = get_context("spawn")
    for mode in modes:
        with tempfile.TemporaryDirectory(prefix="bench-snapshots-") as root:
            started = time.perf_counter()
            with ProcessPoolExecutor(2, mp_context=spawn) as pool:
                halves = (range(0, args.pairs, 2), range(1, args.pairs, 2))
                changed = sum(
                    pool.map(
                        generate,
                        (root, root),
                        halves,
                        (args.changed,) * 2,
                        (mode == "reencode",) * 2,
                    )
                )
            print(
                f"[{mode}] generated {args.pairs} pairs of {WIDTH}×{HEIGHT} "
                f"({changed} changed) in {time.perf_counter() - started:.1f} s"
            )
            for workers in (int(value) for value in args.workers.split(",")):
                with ProcessPoolExecutor(1, mp_context=spawn) as pool:
                    figures = pool.submit(measure, root, workers).result()
                rss = ", ".join(
                    f"{key.removeprefix('rss_after_')}: {value:.0f}"
                    for key, value in figures.items()
                    if key.startswith("rss_after_")
                )
                print(
                    f"[{mode}] workers={workers}: {figures['pairs']:.0f} pairs "
                    f"({figures['changed']:.0f} changed) in {figures['seconds']:.2f} s = "
                    f"{figures['pairs_per_second']:.0f} pairs/s "
                    f"({figures['cpu_ms_per_pair']:.1f} CPU ms/pair); peak RSS MiB "
                    f"before {figures['rss_before']:.0f}, after n pairs {{{rss}}}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
