"""Benchmark a full review of a large synthetic pull request.

2,000 changed files and 100,000 added lines in a real git repository, including a
50,000-line package-lock.json change with 500 version bumps; the npm registry is a local
server answering after 20 ms. Prints wall time, CPU time and peak RSS of the review, and
how long the registry look-ups took against one round trip.

    .venv/bin/python bench/bench_review.py [--files 2000] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reviewbot.pipeline import analyse  # noqa: E402
from reviewbot.registry import RegistryClient, RegistryConfig  # noqa: E402
from reviewbot.render import render_review  # noqa: E402

LOCK_PACKAGES = 5_000
BUMPED = 500


def _registry_server(port_queue: multiprocessing.Queue[int], latency: float) -> None:
    """An npm-like registry in its own process (its CPU does not count against the review).

    asyncio with HTTP/1.1 keep-alive, so the server adds the latency and little else.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                path = request.split(b" ", 2)[1].decode()
                await asyncio.sleep(latency)
                name = path.strip("/").replace("%2F", "/").replace("%2f", "/")
                body = json.dumps(
                    {
                        "name": name,
                        "time": {"1.0.0": "2020-01-01T00:00:00Z", "1.0.1": "2026-11-26T10:00:00Z"},
                    }
                ).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        port_queue.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


def _lock(version_for: dict[int, str]) -> str:
    packages: dict[str, object] = {"": {"name": "bench", "version": "1.0.0"}}
    for i in range(LOCK_PACKAGES):
        version = version_for.get(i, "1.0.0")
        packages[f"node_modules/pkg-{i}"] = {
            "version": version,
            "resolved": f"https://registry.example/pkg-{i}/-/pkg-{i}-{version}.tgz",
            "integrity": f"sha512-{i:08d}{version}",
            "license": "MIT",
            "dev": True,
            "engines": {"node": ">=18"},
        }
    return json.dumps({"name": "bench", "lockfileVersion": 3, "packages": packages}, indent=2)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def build_repo(repo: Path, files: int) -> tuple[int, int]:
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "bench@example.com")
    _git(repo, "config", "user.name", "bench")
    (repo / "package-lock.json").write_text(_lock({}))
    (repo / "src").mkdir()
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    _git(repo, "checkout", "-q", "-b", "feature")
    bumped = {i * (LOCK_PACKAGES // BUMPED): "1.0.1" for i in range(BUMPED)}
    (repo / "package-lock.json").write_text(_lock(bumped))
    lock_lines = len((repo / "package-lock.json").read_text().splitlines())
    remaining = 100_000 - 2 * BUMPED
    per_file = remaining // (files - 1)
    for i in range(files - 1):
        if i % 2:
            body = [
                f"export function f{i}_{n}(id: string) {{ return id + '{n}'; }}"
                for n in range(per_file - 2)
            ]
            if i % 50 == 1:
                body.append("import { ConversationClient } from '@openhands/typescript-client';")
                body.append(f"await client.sendEvent(id, {{ role: 'user', content: 'x{i}' }});")
            else:
                body += ["// end", "// end"]
            (repo / "src" / f"mod{i}.ts").write_text("\n".join(body) + "\n")
        else:
            body = [f"def f{i}_{n}(x):\n    return x + {n}" for n in range(per_file // 2)]
            (repo / "src" / f"mod{i}.py").write_text("\n".join(body) + "\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "big change")
    return lock_lines, BUMPED


class _TimedRegistry(RegistryClient):
    wait = 0.0

    async def publish_times(self, packages):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return await super().publish_times(packages)
        finally:
            self.wait += time.perf_counter() - started


async def run(repo: Path, registry_url: str) -> None:
    from reviewbot.gitlocal import GitSource

    config = RegistryConfig(pypi_url=registry_url, npm_url=registry_url)
    started_wall = time.perf_counter()
    started_cpu = time.process_time()
    async with _TimedRegistry(config) as registry:
        outcome = await analyse(
            GitSource(repo, "main", "feature"),
            registry=registry,
            now=datetime(2026, 11, 26, 12, tzinfo=UTC),
        )
        rendered = render_review(outcome.review)
    wall = time.perf_counter() - started_wall
    cpu = time.process_time() - started_cpu
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    review = outcome.review
    added = sum(len(f.added) for f in outcome.changeset.files)
    print(f"changed files        {len(outcome.changeset.files)}")
    print(f"added lines          {added}")
    print(
        f"findings             {len(review.findings)} "
        f"({sum(f.rule == 'dependency-too-fresh' for f in review.findings)} too-fresh)"
    )
    print(f"body characters      {len(rendered.body)}")
    print(f"wall time            {wall:.2f} s")
    print(f"CPU time (reviewbot) {cpu:.2f} s   (target < 2 s)")
    print(f"CPU time (git)       {children.ru_utime + children.ru_stime:.2f} s")
    print(f"peak RSS             {peak_mb:.0f} MB   (target < 300 MB)")
    print(
        f"registry wait        {registry.wait * 1000:.0f} ms for {BUMPED} look-ups "
        f"(one round trip is about {LATENCY * 1000:.0f} ms)"
    )


LATENCY = 0.02


def main() -> None:
    global LATENCY
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=20)
    args = parser.parse_args()
    LATENCY = args.latency_ms / 1000
    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    server = multiprocessing.Process(target=_registry_server, args=(ports, LATENCY), daemon=True)
    server.start()
    try:
        port = ports.get(timeout=10)
        with tempfile.TemporaryDirectory() as tmp:
            repo = Path(tmp) / "repo"
            lock_lines, bumps = build_repo(repo, args.files)
            print(
                f"synthetic PR         {args.files} files, package-lock.json "
                f"{lock_lines} lines with {bumps} bumps, registry latency {args.latency_ms} ms"
            )
            print("-- first review in a fresh process (imports, template compilation)")
            asyncio.run(run(repo, f"http://127.0.0.1:{port}"))
            print("-- the same review again, as a running service would (registry cache cold)")
            asyncio.run(run(repo, f"http://127.0.0.1:{port}"))
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
