"""One fake package registry (npm and PyPI) on respx, for tests above the registry client."""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import unquote

import httpx
import respx

NPM = "https://npm.registry.test"
PYPI = "https://pypi.registry.test"

_PYPI_PATH = re.compile(r"^/pypi/(?P<name>[^/]+)/(?P<version>[^/]+)/json$")


class FakeRegistry:
    """Publish times by (ecosystem, name, version); everything else is a 404."""

    def __init__(self, router: respx.MockRouter) -> None:
        self.times: dict[tuple[str, str, str], datetime] = {}
        self.requests: list[str] = []
        router.route(host=httpx.URL(NPM).host).mock(side_effect=self._npm)
        router.route(host=httpx.URL(PYPI).host).mock(side_effect=self._pypi)

    def publish(self, ecosystem: str, name: str, version: str, when: datetime) -> None:
        self.times[(ecosystem, name, version)] = when

    def _npm(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(str(request.url))
        name = unquote(request.url.path.lstrip("/"))
        versions = {v: t for (eco, n, v), t in self.times.items() if eco == "npm" and n == name}
        if not versions:
            return httpx.Response(404, json={"error": "Not found"})
        time = {v: t.isoformat().replace("+00:00", "Z") for v, t in versions.items()}
        return httpx.Response(
            200, json={"name": name, "versions": {v: {} for v in time}, "time": time}
        )

    def _pypi(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(str(request.url))
        match = _PYPI_PATH.match(request.url.path)
        when = self.times.get(("pypi", match["name"], match["version"])) if match else None
        if when is None:
            return httpx.Response(404, json={"message": "Not Found"})
        stamp = when.isoformat().replace("+00:00", "Z")
        return httpx.Response(200, json={"urls": [{"upload_time_iso_8601": stamp}]})
