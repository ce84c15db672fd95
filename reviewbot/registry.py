"""Package registries: when each name@version was published — the only registry I/O.

PyPI: ``/pypi/{name}/{version}/json``, the earliest ``urls[].upload_time_iso_8601``. npm: the
full packument ``/{name}`` (the abbreviated form has no ``time``), ``time[version]``. Every
failure becomes a ``PublishTime`` with a reason; nothing here raises to the caller.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import re
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

import certifi
import httpx

from reviewbot import metrics
from reviewbot.models import Package, PublishTime

_USER_AGENT = "reviewbot (dependency age check)"
# The full packument; "application/vnd.npm.install-v1+json" would drop the "time" map.
_NPM_ACCEPT = "application/json"
_PYPI_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_NPM_NAME = re.compile(r"^(?:@[A-Za-z0-9][\w.~-]*/)?[A-Za-z0-9_~][\w.~-]*$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.!+_-]*$")
_CONNECTIONS_PER_POOL = 4
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RegistryConfig:
    pypi_url: str = "https://pypi.org"
    npm_url: str = "https://registry.npmjs.org"
    timeout_s: float = 10.0
    concurrency: int = 64
    retries: int = 2
    # First retry waits this long, doubling after; Retry-After is honoured up to the cap.
    backoff_s: float = 0.25
    retry_after_cap_s: float = 5.0
    # Packuments of long-lived npm packages reach tens of MB; bigger answers are refused
    # rather than held in memory (several may be in flight at once).
    max_answer_bytes: int = 20_000_000
    cache_size: int = 50_000

    def __post_init__(self) -> None:
        for url in (self.pypi_url, self.npm_url):
            if not url.startswith(("https://", "http://")):
                raise ValueError(f"registry URL must be http(s): {url!r}")
        if self.timeout_s <= 0 or self.concurrency < 1 or self.retries < 0:
            raise ValueError("timeout_s > 0, concurrency >= 1 and retries >= 0 are required")
        if self.max_answer_bytes < 1 or self.cache_size < 0:
            raise ValueError("max_answer_bytes and cache_size must be positive")


class _Unverifiable(Exception):
    """A look-up failed for a reason worth telling the reader."""


@dataclass(frozen=True)
class _NpmTimes:
    times: Mapping[str, object]
    versions: frozenset[str] | None


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 timestamp as an aware UTC datetime (naive values are taken as UTC)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max((moment - datetime.now(UTC)).total_seconds(), 0.0)


class RegistryClient:
    """Dates packages on PyPI and npm, concurrently, with bounds, retries and a cache.

    Use as ``async with RegistryClient(config) as client`` or call ``aclose()``; a client
    passed in (tests, benchmarks) is left open for its owner.
    """

    def __init__(self, config: RegistryConfig, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._owns_client = client is None
        # Several small connection pools rather than one wide one: httpcore rescans every
        # pooled connection for each request, which cost ~7 ms of CPU per look-up at 32
        # connections (bench/bench_review.py) and under 1 ms at 4.
        shards = max(1, config.concurrency // _CONNECTIONS_PER_POOL)
        # One TLS context for every pool: loading the CA bundle costs ~35 ms each time.
        tls = ssl.create_default_context(cafile=certifi.where())
        self._clients = (
            [client]
            if client is not None
            else [
                httpx.AsyncClient(
                    verify=tls,
                    timeout=httpx.Timeout(config.timeout_s),
                    limits=httpx.Limits(
                        max_connections=_CONNECTIONS_PER_POOL,
                        max_keepalive_connections=_CONNECTIONS_PER_POOL,
                    ),
                    headers={"User-Agent": _USER_AGENT},
                )
                for _ in range(shards)
            ]
        )
        self._next_client = itertools.cycle(self._clients)
        self._semaphore = asyncio.Semaphore(config.concurrency)
        self._cache: dict[Package, PublishTime] = {}
        # Counters for metrics: packages asked for, answered from the cache, HTTP attempts.
        self.lookups = 0
        self.cache_hits = 0
        self.http_requests = 0

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client:
            for client in self._clients:
                await client.aclose()

    async def publish_times(self, packages: Iterable[Package]) -> dict[Package, PublishTime]:
        """The publish time of every package, or why it is unknown. Never raises."""
        wanted = list(dict.fromkeys(packages))
        self.lookups += len(wanted)
        metrics.REGISTRY_LOOKUPS.inc(len(wanted))
        answers: dict[Package, PublishTime] = {}
        pending: list[Package] = []
        for package in wanted:
            cached = self._cache.get(package)
            if cached is not None:
                self.cache_hits += 1
                metrics.REGISTRY_CACHE_HITS.inc()
                answers[package] = cached
            else:
                pending.append(package)
        # One packument per npm name per call, however many of its versions are asked for.
        packuments: dict[str, asyncio.Task[_NpmTimes]] = {}
        try:
            results = await asyncio.gather(*(self._one(p, packuments) for p in pending))
        finally:
            for task in packuments.values():
                task.cancel()
        for package, answer in zip(pending, results, strict=True):
            answers[package] = answer
            if answer.published is not None:
                self._remember(answer)
        return answers

    def _remember(self, answer: PublishTime) -> None:
        # A publish time never changes; failures are not cached (a 404 may be published soon).
        if self.config.cache_size == 0:
            return
        while len(self._cache) >= self.config.cache_size:
            del self._cache[next(iter(self._cache))]
        self._cache[answer.package] = answer

    async def _one(
        self, package: Package, packuments: dict[str, asyncio.Task[_NpmTimes]]
    ) -> PublishTime:
        try:
            if package.ecosystem == "pypi":
                published = await self._pypi(package)
            elif package.ecosystem == "npm":
                task = packuments.get(package.name)
                if task is None:
                    task = asyncio.create_task(self._npm_times(package.name))
                    packuments[package.name] = task
                published = self._npm_published(package, await task)
            else:
                raise _Unverifiable(f"no registry client for {package.ecosystem}")
        except _Unverifiable as error:
            return PublishTime(package, None, str(error))
        return PublishTime(package, published)

    # ---- PyPI ----------------------------------------------------------------------------

    async def _pypi(self, package: Package) -> datetime:
        if not _PYPI_NAME.match(package.name) or not _VERSION.match(package.version):
            raise _Unverifiable("not a valid PyPI name and version")
        base = self.config.pypi_url.rstrip("/")
        url = f"{base}/pypi/{quote(package.name)}/{quote(package.version)}/json"
        data = await self._get_json(url, "PyPI", {"Accept": "application/json"})
        files = data.get("urls") if isinstance(data, dict) else None
        if not isinstance(files, list):
            raise _Unverifiable("malformed answer from PyPI (no file list)")
        if not files:
            raise _Unverifiable("PyPI lists no uploaded files for this version")
        times = [
            moment
            for item in files
            if isinstance(item, dict)
            and (moment := parse_time(item.get("upload_time_iso_8601") or item.get("upload_time")))
        ]
        if not times:
            raise _Unverifiable("malformed answer from PyPI (no upload times)")
        return min(times)

    # ---- npm -----------------------------------------------------------------------------

    async def _npm_times(self, name: str) -> _NpmTimes:
        if not _NPM_NAME.match(name):
            raise _Unverifiable("not a valid npm package name")
        # Scoped names travel as one path segment: @scope%2Fname.
        url = f"{self.config.npm_url.rstrip('/')}/{quote(name, safe='@')}"
        data = await self._get_json(url, "npm", {"Accept": _NPM_ACCEPT})
        times = data.get("time") if isinstance(data, dict) else None
        if not isinstance(times, dict):
            raise _Unverifiable("malformed answer from npm (no time map)")
        versions = data.get("versions") if isinstance(data, dict) else None
        listed = frozenset(versions) if isinstance(versions, dict) else None
        # Keep only what is needed: a big packument is dropped as soon as this returns.
        return _NpmTimes(times, listed)

    @staticmethod
    def _npm_published(package: Package, packument: _NpmTimes) -> datetime:
        if not _VERSION.match(package.version):
            raise _Unverifiable("not a valid npm version")
        stamp = packument.times.get(package.version)
        if stamp is None:
            if packument.versions is not None and package.version not in packument.versions:
                raise _Unverifiable("npm does not list this version")
            raise _Unverifiable("npm has no publish time for this version")
        moment = parse_time(stamp)
        if moment is None:
            raise _Unverifiable("malformed answer from npm (unreadable publish time)")
        return moment

    # ---- HTTP ----------------------------------------------------------------------------

    async def _get_json(self, url: str, registry: str, headers: Mapping[str, str]) -> Any:
        attempt = 0
        while True:
            wait: float | None = None
            try:
                async with self._semaphore:
                    self.http_requests += 1
                    async with asyncio.timeout(self.config.timeout_s):
                        status, body, wait = await self._fetch(url, registry, headers)
            except TimeoutError:
                reason = f"{registry} did not answer within {self.config.timeout_s:g} s"
            except httpx.RequestError as error:
                reason = f"could not reach {registry} ({type(error).__name__})"
            else:
                if status == 200:
                    try:
                        return json.loads(body)
                    except (ValueError, RecursionError) as error:
                        raise _Unverifiable(f"malformed answer from {registry}") from error
                if status == 404:
                    raise _Unverifiable(f"not found on {registry} (HTTP 404)")
                if status not in _RETRY_STATUSES:
                    raise _Unverifiable(f"{registry} answered HTTP {status}")
                reason = f"{registry} answered HTTP {status}"
            if attempt >= self.config.retries:
                tries = attempt + 1
                raise _Unverifiable(reason + (f" ({tries} attempts)" if tries > 1 else ""))
            delay = self.config.backoff_s * 2**attempt if wait is None else wait
            await asyncio.sleep(min(delay, self.config.retry_after_cap_s))
            attempt += 1

    async def _fetch(
        self, url: str, registry: str, headers: Mapping[str, str]
    ) -> tuple[int, bytes, float | None]:
        """(status, body, Retry-After seconds); the body is read only for 200 and bounded."""
        limit = self.config.max_answer_bytes
        too_large = f"answer too large from {registry} (over {limit // 1_000_000} MB)"
        async with next(self._next_client).stream(
            "GET", url, headers=dict(headers), follow_redirects=True
        ) as response:
            if response.status_code != 200:
                return response.status_code, b"", _retry_after(response)
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise _Unverifiable(too_large)
            chunks: list[bytes] = []
            size = 0
            # Counted after decompression, so a small gzip bomb is caught too.
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise _Unverifiable(too_large)
                chunks.append(chunk)
            return 200, b"".join(chunks), None
