"""Load and fault test of the scaled-out service: 2 servers, 2 workers, Redis, fake GitHub.

Everything on loopback: a Redis started here (append-only file on), two `reviewbot serve`
processes that only verify and enqueue, two `reviewbot worker` processes, and the shared
fake GitHub served over HTTP with 50 ms per call. 1,000 signed deliveries over 100 pull
requests: pushes in bursts on the same PRs, 30 % redeliveries of earlier delivery ids, a
few malformed and mis-signed bodies. Midway one worker is killed with SIGKILL (and started
again) and Redis is restarted once. Deliveries answered 503 meanwhile are redelivered
afterwards, as a maintainer would from GitHub's delivery log.

    .venv/bin/python bench/bench_load.py [--deliveries 1000] [--prs 100] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
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
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reviewbot.webhook import sign  # noqa: E402
from tests.appkey import new_app_key  # noqa: E402
from tests.fakegithub import FakeFile, FakeGitHub, FakePull  # noqa: E402

SECRET = "load-test-webhook-secret-0123456789"
REPO = "acme/widgets"
FIXTURE = ROOT / "tests" / "fixtures" / "webhooks" / "pull_request.synchronize.json"
CHAT = """\
import { ConversationClient } from "@openhands/typescript-client";

export async function send(client: ConversationClient, id: string, text: string) {
  await client.sendEvent(id, { role: "user", content: [{ type: "text", text }] });
}
"""
DEADLINE_S = 150
LOG_DIR = Path(os.environ.get("BENCH_LOG_DIR", tempfile.gettempdir()))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeGitHubApp:
    """The in-memory fake GitHub as an ASGI app, with a fixed latency per call."""

    def __init__(self, fake: FakeGitHub, latency: float) -> None:
        self.fake = fake
        self.latency = latency

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = scope["query_string"].decode()
        url = f"{self.fake.base_url}{scope['path']}" + (f"?{query}" if query else "")
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"]]
        await asyncio.sleep(self.latency)
        response = self.fake._handle_api(
            httpx.Request(scope["method"], url, headers=headers, content=body)
        )
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [
                    (k.encode(), v.encode())
                    for k, v in response.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding")
                ]
                + [(b"content-length", str(len(response.content)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": response.content})


class Redis:
    def __init__(self, port: int, folder: Path) -> None:
        self.port, self.folder, self.process = port, folder, None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)


def _payload(number: int, head: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    data["number"] = data["pull_request"]["number"] = number
    data["pull_request"]["head"]["sha"] = head
    data["pull_request"]["draft"] = False
    data["repository"]["name"] = REPO.split("/")[1]
    data["repository"]["full_name"] = REPO
    data["repository"]["owner"]["login"] = REPO.split("/")[0]
    data["installation"] = {"id": 1}
    return data


async def run(args: argparse.Namespace, workdir: Path) -> None:
    rng = random.Random(7)
    key = new_app_key()
    private, public = key.private_pem, key.public_pem
    fake_port, redis_port = _free_port(), _free_port()
    fake = FakeGitHub(f"http://127.0.0.1:{fake_port}")
    fake.register_app(1, public, installations=(1,))
    base = "b" * 40
    fake.add_commit(REPO, base, {"src/chat.ts": "export const x = 1;\n"})
    heads: dict[int, str] = {}
    for number in range(1, args.prs + 1):
        head = uuid.uuid4().hex + "00000000"
        fake.add_commit(REPO, head, {"src/chat.ts": CHAT})
        fake.add_pull(
            REPO,
            FakePull(
                number=number,
                head_sha=head,
                base_sha=base,
                files=[FakeFile.added("src/chat.ts", CHAT)],
            ),
        )
        heads[number] = head
    fake_server = uvicorn.Server(
        uvicorn.Config(
            FakeGitHubApp(fake, args.latency_ms / 1000),
            host="127.0.0.1",
            port=fake_port,
            log_level="warning",
            lifespan="off",
        )
    )
    fake_task = asyncio.create_task(fake_server.serve())

    redis = Redis(redis_port, workdir / "redis")
    (workdir / "redis").mkdir()
    redis.start()
    env = {
        **os.environ,
        "REVIEWBOT_WEBHOOK_SECRET": SECRET,
        "REVIEWBOT_APP_ID": "1",
        "REVIEWBOT_PRIVATE_KEY": private,
        "REVIEWBOT_BOT_LOGIN": "reviewbot[bot]",
        "REVIEWBOT_GITHUB_API_URL": f"http://127.0.0.1:{fake_port}",
        "REVIEWBOT_QUEUE_URL": f"redis://127.0.0.1:{redis_port}/0",
        "REVIEWBOT_RUN_WORKER": "0",
        "REVIEWBOT_REVIEW_ALL_PRS": "1",
        "REVIEWBOT_JOB_LEASE_SECONDS": "5",
        "REVIEWBOT_JOB_BACKOFF_BASE_SECONDS": "0.5",
        "REVIEWBOT_JOB_BACKOFF_MAX_SECONDS": "2",
        "REVIEWBOT_JOB_MAX_ATTEMPTS": "8",
        "REVIEWBOT_WORKER_CONCURRENCY": "8",
        "REVIEWBOT_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "REVIEWBOT_DATA_DIR": str(workdir / "data"),
    }
    processes: list[subprocess.Popen[bytes]] = []

    def spawn(*command: str) -> subprocess.Popen[bytes]:
        log = open(LOG_DIR / f"{command[0]}-{len(processes)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "reviewbot", *command], env=env, stdout=log, stderr=log
        )
        processes.append(process)
        return process

    server_ports = [_free_port(), _free_port()]
    for port in server_ports:
        spawn("serve", "--port", str(port))
    workers = [spawn("worker"), spawn("worker")]
    try:
        clients = [
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{p}", timeout=30) for p in server_ports
        ]
        deadline = time.monotonic() + 30
        for client in clients:
            while True:
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("servers did not start")
                await asyncio.sleep(0.1)

        sent: list[tuple[str, bytes]] = []  # (delivery id, body) of good deliveries
        acks: list[float] = []
        outcomes: Counter[str] = Counter()
        refused: list[tuple[str, bytes]] = []
        bad = 0

        async def deliver(delivery: str, body: bytes, signature: str | None) -> None:
            client = rng.choice(clients)
            headers = {
                "X-GitHub-Event": "pull_request",
                "X-GitHub-Delivery": delivery,
                "Content-Type": "application/json",
            }
            if signature is not None:
                headers["X-Hub-Signature-256"] = signature
            started = time.perf_counter()
            try:
                response = await client.post("/webhook", content=body, headers=headers)
                status = response.status_code
            except httpx.TransportError:
                status = 0
            acks.append(time.perf_counter() - started)
            outcomes[str(status)] += 1
            if status in (0, 500, 503) and signature == sign(SECRET, body):
                refused.append((delivery, body))

        killed = redis_restarted = False
        opened: set[int] = set()
        last_number = 1
        started_at = time.monotonic()
        for index in range(args.deliveries):
            if index == args.deliveries // 3 and not killed:
                workers[0].send_signal(signal.SIGKILL)  # a worker dies mid-run
                workers[0].wait()
                workers[0] = spawn("worker")
                killed = True
            if index == args.deliveries // 2 and not redis_restarted:
                redis.stop()
                redis.start()  # same dir: the append-only file brings the queue back
                redis_restarted = True
            roll = rng.random()
            if index % 97 == 13:
                bad += 1
                body = b'{"not": "closed"'
                await deliver(str(uuid.uuid4()), body, sign(SECRET, body))
            elif index % 89 == 7:
                bad += 1
                body = json.dumps(_payload(1, heads[1])).encode()
                await deliver(str(uuid.uuid4()), body, sign("wrong-secret", body))
            elif roll < 0.3 and sent:
                delivery, body = rng.choice(sent)  # a redelivery of an earlier delivery
                await deliver(delivery, body, sign(SECRET, body))
            else:
                # Every PR is opened first; then pushes come in bursts: a few consecutive
                # pushes to the same PR.
                if len(opened) < args.prs:
                    number = len(opened) + 1
                elif index % 4 == 0:
                    number = rng.randint(1, args.prs)
                else:
                    number = last_number
                opened.add(number)
                last_number = number
                head = uuid.uuid4().hex + "00000000"
                fake.add_commit(REPO, head, {"src/chat.ts": CHAT})
                fake.repo(REPO).pulls[number].head_sha = head
                heads[number] = head
                body = json.dumps(_payload(number, head)).encode()
                delivery = str(uuid.uuid4())
                sent.append((delivery, body))
                await deliver(delivery, body, sign(SECRET, body))
            await asyncio.sleep(0.005)
        for delivery, body in list(refused):  # redelivered from GitHub's log
            await deliver(delivery, body, sign(SECRET, body))
        send_time = time.monotonic() - started_at

        def reviews_on_final_heads() -> dict[int, int]:
            return {
                number: sum(
                    r["commit_id"] == heads[number] for r in fake.repo(REPO).pulls[number].reviews
                )
                for number in heads
            }

        while time.monotonic() - started_at < DEADLINE_S:
            if all(count >= 1 for count in reviews_on_final_heads().values()):
                await asyncio.sleep(3)  # let stragglers (duplicates, if any) arrive
                break
            await asyncio.sleep(0.5)
        drained = time.monotonic() - started_at
        finals = reviews_on_final_heads()
        all_reviews = [r for pull in fake.repo(REPO).pulls.values() for r in pull.reviews]
        per_head = Counter((r["commit_id"]) for r in all_reviews)
        api = Counter(r.route for r in fake.requests)
        print(
            f"deliveries sent             {len(acks)} ({len(refused)} of them redelivered "
            f"after a 5xx) in {send_time:.1f} s"
        )
        print(f"answers                     {dict(sorted(outcomes.items()))}")
        print(f"acknowledged (2xx)          {sum(v for k, v in outcomes.items() if k[0] == '2')}")
        print(
            f"ack p50 / p99               {statistics.median(acks) * 1000:.1f} ms / "
            f"{sorted(acks)[int(0.99 * len(acks))] * 1000:.1f} ms"
        )
        print(f"rejected bad deliveries     {outcomes['400'] + outcomes['401']} of {bad} sent")
        print(
            f"reviews posted              {len(all_reviews)} "
            f"(on {len(per_head)} distinct heads), queue drained after {drained:.1f} s"
        )
        print(
            f"reviews per (PR, final head) {sorted(Counter(finals.values()).items())} "
            "(count: PRs) — must be exactly one each"
        )
        print(
            f"lost jobs                   {sum(1 for c in finals.values() if c == 0)} (must be 0)"
        )
        print(
            f"duplicate reviews           {sum(c - 1 for c in per_head.values() if c > 1)} "
            "(must be 0)"
        )
        print(f"GitHub API calls            {sum(api.values())}")
        for number, count in finals.items():
            if count == 0:
                print(f"  lost: PR {number} final head {heads[number][:12]}")
        for client in clients:
            await client.aclose()
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                process.kill()
        redis.stop()
        fake_server.should_exit = True
        await fake_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--prs", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=50)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is needed: run `make redis` (or apt-get install redis)")
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(run(args, Path(folder)))


if __name__ == "__main__":
    main()
