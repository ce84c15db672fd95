"""RegistryClient against PyPI and npm faked with respx: times, failures, bounds, cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
import respx

from reviewbot.models import Package, PublishTime
from reviewbot.registry import RegistryClient, RegistryConfig

PYPI = "https://pypi.test"
NPM = "https://npm.test"


def config(**overrides: object) -> RegistryConfig:
    values: dict[str, object] = {
        "pypi_url": PYPI,
        "npm_url": NPM,
        "timeout_s": 2.0,
        "retries": 2,
        "backoff_s": 0.0,
        "retry_after_cap_s": 0.05,
    }
    values.update(overrides)
    return RegistryConfig(**values)  # type: ignore[arg-type]


def pypi_answer(*times: str) -> dict[str, object]:
    return {"info": {}, "urls": [{"upload_time_iso_8601": t} for t in times]}


def packument(times: dict[str, str]) -> dict[str, object]:
    return {
        "name": "x",
        "versions": {version: {} for version in times},
        "time": {"created": "2010-01-01T00:00:00.000Z", **times},
    }


async def lookup(packages: list[Package], **overrides: object) -> dict[Package, PublishTime]:
    async with RegistryClient(config(**overrides)) as client:
        answers = await client.publish_times(packages)
    return dict(answers)


@respx.mock
async def test_pypi_takes_the_earliest_upload_of_the_version() -> None:
    route = respx.get(f"{PYPI}/pypi/requests/2.32.0/json").respond(
        json=pypi_answer(
            "2024-05-20T19:00:00.123456Z", "2024-05-20T18:55:01.000001Z", "2024-05-21T00:00:00Z"
        )
    )
    package = Package("pypi", "requests", "2.32.0")
    async with RegistryClient(config()) as client:
        answer = (await client.publish_times([package]))[package]
    assert answer.error is None
    assert answer.published == datetime(2024, 5, 20, 18, 55, 1, 1, tzinfo=UTC)
    assert route.call_count == 1
    assert route.calls.last.request.headers["accept"] == "application/json"


@respx.mock
async def test_npm_reads_time_of_the_version_from_the_full_packument() -> None:
    route = respx.get(f"{NPM}/left-pad").respond(
        json=packument({"1.3.0": "2018-04-09T01:21:09.926Z", "1.3.1": "2024-01-01T10:00:00Z"})
    )
    package = Package("npm", "left-pad", "1.3.0")
    async with RegistryClient(config()) as client:
        answer = (await client.publish_times([package]))[package]
    assert answer.published == datetime(2018, 4, 9, 1, 21, 9, 926000, tzinfo=UTC)
    # The abbreviated packument ("application/vnd.npm.install-v1+json") has no time map.
    assert route.calls.last.request.headers["accept"] == "application/json"


@respx.mock
async def test_scoped_npm_names_are_one_url_encoded_path_segment() -> None:
    route = respx.get(url__regex=r"^https://npm\.test/@types%2[Ff]node$").respond(
        json=packument({"20.1.0": "2023-05-01T00:00:00Z"})
    )
    package = Package("npm", "@types/node", "20.1.0")
    answers = await lookup([package])
    assert route.call_count == 1
    assert "/@types%2Fnode" in str(route.calls.last.request.url).replace("%2f", "%2F")
    assert answers[package].published == datetime(2023, 5, 1, tzinfo=UTC)


@respx.mock
async def test_many_versions_of_one_npm_package_fetch_one_packument() -> None:
    times = {f"1.{i}.0": f"2020-01-{i + 1:02d}T00:00:00Z" for i in range(20)}
    route = respx.get(f"{NPM}/lodash").respond(json=packument(times))
    packages = [Package("npm", "lodash", version) for version in times]
    async with RegistryClient(config()) as client:
        answers = await client.publish_times(packages)
        assert client.http_requests == 1
    assert route.call_count == 1
    assert {a.published.day for a in answers.values() if a.published} == set(range(1, 21))


@pytest.mark.parametrize(
    ("package", "url", "answer", "reason"),
    [
        (
            Package("pypi", "nope", "1.0.0"),
            f"{PYPI}/pypi/nope/1.0.0/json",
            httpx.Response(404),
            "not found on PyPI (HTTP 404)",
        ),
        (
            Package("npm", "nope", "1.0.0"),
            f"{NPM}/nope",
            httpx.Response(404),
            "not found on npm (HTTP 404)",
        ),
        (
            Package("pypi", "empty", "1.0.0"),
            f"{PYPI}/pypi/empty/1.0.0/json",
            httpx.Response(200, json=pypi_answer()),
            "PyPI lists no uploaded files for this version",
        ),
        (
            Package("pypi", "broken", "1.0.0"),
            f"{PYPI}/pypi/broken/1.0.0/json",
            httpx.Response(200, text="<html>not json"),
            "malformed answer from PyPI",
        ),
        (
            Package("pypi", "odd", "1.0.0"),
            f"{PYPI}/pypi/odd/1.0.0/json",
            httpx.Response(200, json={"urls": [{"upload_time_iso_8601": "yesterday"}]}),
            "malformed answer from PyPI (no upload times)",
        ),
        (
            Package("npm", "abbrev", "1.0.0"),
            f"{NPM}/abbrev",
            httpx.Response(200, json={"name": "abbrev", "versions": {"1.0.0": {}}}),
            "malformed answer from npm (no time map)",
        ),
        (
            Package("npm", "left-pad", "9.9.9"),
            f"{NPM}/left-pad",
            httpx.Response(200, json=packument({"1.0.0": "2020-01-01T00:00:00Z"})),
            "npm does not list this version",
        ),
        (
            Package("npm", "forbidden", "1.0.0"),
            f"{NPM}/forbidden",
            httpx.Response(403),
            "npm answered HTTP 403",
        ),
    ],
)
@respx.mock
async def test_failures_become_reasons_not_exceptions(
    package: Package, url: str, answer: httpx.Response, reason: str
) -> None:
    route = respx.get(url).mock(return_value=answer)
    async with RegistryClient(config()) as client:
        result = (await client.publish_times([package]))[package]
    assert result.published is None
    assert result.error == reason
    assert route.call_count == 1  # 4xx other than 429 is not retried


async def test_unknown_ecosystem_and_invalid_names_need_no_request() -> None:
    with respx.mock(assert_all_called=False) as mock:
        packages = [
            Package("cargo", "serde", "1.0.0"),
            Package("pypi", "../admin", "1.0"),
            Package("npm", "..", "1.0.0"),
        ]
        answers = await lookup(packages)
        assert mock.calls.call_count == 0
    assert answers[packages[0]].error == "no registry client for cargo"
    assert "not a valid" in str(answers[packages[1]].error)
    assert "not a valid" in str(answers[packages[2]].error)


@respx.mock
async def test_server_errors_are_retried_then_succeed() -> None:
    route = respx.get(f"{PYPI}/pypi/flaky/1.0.0/json").mock(
        side_effect=[
            httpx.Response(500),
            httpx.Response(503),
            httpx.Response(200, json=pypi_answer("2020-01-01T00:00:00Z")),
        ]
    )
    package = Package("pypi", "flaky", "1.0.0")
    async with RegistryClient(config()) as client:
        answer = (await client.publish_times([package]))[package]
        assert client.http_requests == 3
    assert answer.published == datetime(2020, 1, 1, tzinfo=UTC)
    assert route.call_count == 3


@respx.mock
async def test_retries_are_bounded_and_the_reason_says_how_many() -> None:
    route = respx.get(f"{NPM}/down").respond(502)
    package = Package("npm", "down", "1.0.0")
    answers = await lookup([package], retries=2)
    assert route.call_count == 3
    assert answers[package].error == "npm answered HTTP 502 (3 attempts)"


@respx.mock
async def test_429_honours_retry_after_up_to_the_cap() -> None:
    route = respx.get(f"{PYPI}/pypi/busy/1.0.0/json").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "3600"}),
            httpx.Response(200, json=pypi_answer("2021-06-01T00:00:00Z")),
        ]
    )
    package = Package("pypi", "busy", "1.0.0")
    started = asyncio.get_running_loop().time()
    answers = await lookup([package], retry_after_cap_s=0.05)
    elapsed = asyncio.get_running_loop().time() - started
    assert route.call_count == 2
    assert answers[package].published == datetime(2021, 6, 1, tzinfo=UTC)
    assert 0.04 <= elapsed < 1.0  # waited, but the cap, not the hour asked for


@respx.mock
async def test_network_errors_and_timeouts_are_retried_then_reported() -> None:
    respx.get(f"{PYPI}/pypi/unreachable/1.0.0/json").mock(side_effect=httpx.ConnectError)
    respx.get(f"{NPM}/slowpoke").mock(side_effect=httpx.ReadTimeout)
    unreachable = Package("pypi", "unreachable", "1.0.0")
    slow = Package("npm", "slowpoke", "1.0.0")
    answers = await lookup([unreachable, slow], retries=1)
    assert answers[unreachable].error == "could not reach PyPI (ConnectError) (2 attempts)"
    assert answers[slow].error == "could not reach npm (ReadTimeout) (2 attempts)"


@respx.mock
async def test_a_registry_that_hangs_is_cut_off_by_the_request_timeout() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=pypi_answer("2020-01-01T00:00:00Z"))

    respx.get(f"{PYPI}/pypi/hang/1.0.0/json").mock(side_effect=hang)
    package = Package("pypi", "hang", "1.0.0")
    started = asyncio.get_running_loop().time()
    answers = await lookup([package], timeout_s=0.05, retries=0)
    assert asyncio.get_running_loop().time() - started < 2
    assert answers[package].error == "PyPI did not answer within 0.05 s"


class _Chunks(httpx.AsyncByteStream):
    """A body of unknown length (no Content-Length), like a chunked answer."""

    def __init__(self, size: int) -> None:
        self.size = size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        while sent < self.size:
            yield b" " * 100
            sent += 100


@respx.mock
async def test_answers_over_the_size_bound_are_refused() -> None:
    declared = respx.get(f"{NPM}/huge").respond(json=packument({"1.0.0": "2020-01-01T00:00:00Z"}))
    respx.get(f"{NPM}/endless").mock(return_value=httpx.Response(200, stream=_Chunks(10_000)))
    huge = Package("npm", "huge", "1.0.0")
    endless = Package("npm", "endless", "1.0.0")
    answers = await lookup([huge, endless], max_answer_bytes=50)
    assert declared.call_count == 1  # not retried: it would be just as large again
    for package in (huge, endless):
        assert answers[package].published is None
        assert str(answers[package].error).startswith("answer too large from npm")


@respx.mock
async def test_concurrency_bound_is_respected() -> None:
    in_flight = 0
    peak = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json=pypi_answer("2020-01-01T00:00:00Z"))

    respx.get(url__regex=rf"^{PYPI}/pypi/p\d+/1\.0/json$").mock(side_effect=slow)
    packages = [Package("pypi", f"p{i}", "1.0") for i in range(40)]
    answers = await lookup(packages, concurrency=4)
    assert all(a.published for a in answers.values())
    assert peak == 4


@respx.mock
async def test_publish_times_are_cached_and_failures_are_not() -> None:
    ok = respx.get(f"{PYPI}/pypi/ok/1.0/json").respond(json=pypi_answer("2020-01-01T00:00:00Z"))
    missing = respx.get(f"{PYPI}/pypi/missing/1.0/json").respond(404)
    good, bad = Package("pypi", "ok", "1.0"), Package("pypi", "missing", "1.0")
    async with RegistryClient(config()) as client:
        await client.publish_times([good, bad, good])
        second = await client.publish_times([good, bad])
        assert client.lookups == 4  # duplicates within one call count once
        assert client.cache_hits == 1
        assert client.http_requests == 3
    assert ok.call_count == 1
    assert missing.call_count == 2  # a missing version may be published later
    assert second[good].published == datetime(2020, 1, 1, tzinfo=UTC)


@respx.mock
async def test_cache_is_bounded() -> None:
    respx.get(url__regex=rf"^{PYPI}/pypi/c\d/1\.0/json$").respond(
        json=pypi_answer("2020-01-01T00:00:00Z")
    )
    packages = [Package("pypi", f"c{i}", "1.0") for i in range(5)]
    async with RegistryClient(config(cache_size=3)) as client:
        await client.publish_times(packages)
        await client.publish_times(packages)
        # Only the last three fit, so the second round hits three and fetches two again.
        assert client.cache_hits == 3
        assert client.http_requests == 7


async def test_a_client_passed_in_is_left_open_for_its_owner() -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, json=pypi_answer("2022-02-02T02:02:02Z"))
    )
    package = Package("pypi", "x", "1.0")
    async with httpx.AsyncClient(transport=transport) as http:
        async with RegistryClient(config(), client=http) as client:
            answer = await client.publish_times([package])
        assert not http.is_closed
    assert answer[package].published == datetime(2022, 2, 2, 2, 2, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    "overrides",
    [{"pypi_url": "ftp://pypi"}, {"timeout_s": 0}, {"concurrency": 0}, {"retries": -1}],
)
def test_unsafe_config_is_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        config(**overrides)
