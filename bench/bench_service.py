"""Benchmark the webhook service: acknowledgement latency and delivery-to-review time.

1. Ack latency: `reviewbot serve` (real uvicorn, embedded SQLite queue) on loopback, 200
   signed deliveries in flight at once — fired together, and as 200 clients sending a
   steady stream over keep-alive connections. Only verify + record + enqueue is timed
   (the in-process worker is off, so reviews do not compete for the two cores).
2. End to end: the service in-process with the real worker and pipeline, GitHub faked
   with 50 ms per API call; time from delivery to posted review and the GitHub API calls
   the review cost, for a PR of 10 files and one of 250 files.

    .venv/bin/python bench/bench_service.py [--deliveries 200] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reviewbot.webhook import sign  # noqa: E402

SECRET = "bench-webhook-secret-0123456789"
FIXTURE = ROOT / "tests" / "fixtures" / "webhooks" / "pull_request.opened.json"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _signed(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(SECRET, body),
        "Content-Type": "application/json",
    }


def _payload(number: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    data["number"] = data["pull_request"]["number"] = number
    data["pull_request"]["head"]["sha"] = uuid.uuid4().hex + "00000000"
    return data


async def _ack_latency(url: str, deliveries: int) -> None:
    # One client (one connection) per sender, as GitHub delivers: a single httpx pool of
    # 200 connections spends more CPU rescanning its pool than the server spends answering.
    clients = [httpx.AsyncClient(base_url=url, timeout=30) for _ in range(deliveries)]
    try:
        await asyncio.gather(*(client.get("/healthz") for client in clients))  # connect

        async def one(client: httpx.AsyncClient, number: int) -> float:
            body, headers = _signed(_payload(number))
            started = time.perf_counter()
            response = await client.post("/webhook", content=body, headers=headers)
            assert response.status_code == 202, response.text
            return time.perf_counter() - started

        burst = await asyncio.gather(*(one(c, 1000 + i) for i, c in enumerate(clients)))

        async def steady_client(index: int, count: int) -> list[float]:
            times = []
            await asyncio.sleep(index / deliveries)  # spread the senders over a second
            for n in range(count):
                times.append(await one(clients[index], 5000 + index * 100 + n))
                await asyncio.sleep(1.0)  # each sender delivers once a second
            return times

        per_client = 5
        steady = [
            t
            for times in await asyncio.gather(
                *(steady_client(i, per_client) for i in range(deliveries))
            )
            for t in times
        ]
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    for label, values in (
        (f"{deliveries} fired at the same instant", burst),
        (f"{deliveries} senders, each once a second ({len(steady)} deliveries)", steady),
    ):
        print(
            f"  {label:52} p50 {statistics.median(values) * 1000:6.1f} ms   "
            f"p99 {_percentile(values, 0.99) * 1000:6.1f} ms   (target p99 < 25 ms)"
        )


def ack_benchmark(deliveries: int) -> None:
    port = _free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {
            **os.environ,
            "REVIEWBOT_WEBHOOK_SECRET": SECRET,
            "REVIEWBOT_APP_ID": "1",
            "REVIEWBOT_PRIVATE_KEY": "unused-by-this-benchmark",
            "REVIEWBOT_BOT_LOGIN": "reviewbot[bot]",
            "REVIEWBOT_DATA_DIR": data_dir,
            "REVIEWBOT_RUN_WORKER": "0",
            "REVIEWBOT_LOG_LEVEL": "WARNING",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "reviewbot", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("reviewbot serve did not start")
                time.sleep(0.1)
            print("webhook acknowledgement, real uvicorn on loopback, SQLite queue:")
            asyncio.run(_ack_latency(url, deliveries))
        finally:
            server.terminate()
            server.wait(timeout=30)


SEND_WITHOUT_RUN = """\
import { ConversationClient } from "@openhands/typescript-client";

export async function send(client: ConversationClient, id: string, text: string) {
  await client.sendEvent(id, { role: "user", content: [{ type: "text", text }] });
}
"""


async def _end_to_end(files: int, latency: float) -> None:
    from reviewbot.app import create_app
    from reviewbot.settings import Settings
    from reviewbot.tasks import Tasks
    from tests.appkey import new_app_key
    from tests.fakegithub import FakeFile, FakePull, fake_github_server

    key = new_app_key()
    pem, public = key.private_pem, key.public_pem
    payload = _payload(2)
    head = payload["pull_request"]["head"]["sha"]
    base = payload["pull_request"]["base"]["sha"]
    changed = {"src/chat.ts": SEND_WITHOUT_RUN}
    changed.update({f"src/mod{i}.ts": f"export const v{i} = {i};\n" for i in range(files - 1)})
    with fake_github_server() as fake, tempfile.TemporaryDirectory() as data_dir:
        fake.register_app(1, public, installations=(1,))
        fake.add_commit("Codertocat/Hello-World", base, {})
        fake.add_commit("Codertocat/Hello-World", head, changed)
        fake.add_pull(
            "Codertocat/Hello-World",
            FakePull(
                number=2,
                head_sha=head,
                base_sha=base,
                files=[FakeFile.added(path, text) for path, text in changed.items()],
            ),
        )
        handle = fake._handle_api

        async def slow(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(latency)
            return handle(request)

        fake.router.routes[0].side_effect = slow
        settings = Settings(
            webhook_secret=SECRET,
            app_id=1,
            private_key=pem,
            bot_login="reviewbot[bot]",
            data_dir=Path(data_dir),
            review_all_prs=True,
        )
        tasks = Tasks(settings)
        app = create_app(
            settings, handler=tasks.handle, on_give_up=tasks.give_up, on_shutdown=tasks.aclose
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                body, headers = _signed(payload)
                started = time.perf_counter()
                response = await client.post("/webhook", content=body, headers=headers)
                acked = time.perf_counter() - started
                pull = fake.repo("Codertocat/Hello-World").pulls[2]
                while not pull.reviews and time.perf_counter() - started < 120:
                    await asyncio.sleep(0.01)
                posted = time.perf_counter() - started
        assert response.status_code == 202 and pull.reviews, "no review was posted"
        calls = Counter(
            r.route for r in fake.requests if r.route not in ("access_token", "app", "blob")
        )
        # The head and base trees are the guideline reads (no guideline files here, so no
        # guideline blob reads); one GraphQL call reads the conversation file's whole text.
        guideline = calls.get("get_tree", 0)
        beyond = sum(calls.values()) - guideline
        print(
            f"  {files:4} files: ack {acked * 1000:5.1f} ms, review posted after "
            f"{posted:5.2f} s, {sum(calls.values())} GitHub API calls, {beyond} beyond the "
            f"{guideline} guideline tree reads (target {4 + max(0, (files - 1) // 100)}, "
            f"+1 content read): {dict(sorted(calls.items()))}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=50)
    args = parser.parse_args()
    ack_benchmark(args.deliveries)
    print(f"delivery to posted review, fake GitHub at {args.latency_ms:g} ms per call:")
    for files in (10, 250):
        asyncio.run(_end_to_end(files, args.latency_ms / 1000))


if __name__ == "__main__":
    main()
