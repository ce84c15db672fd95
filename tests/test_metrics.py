"""GET /metrics: Prometheus text with deliveries, queue depth and jobs."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from reviewbot.app import create_app
from tests.helpers_service import RecordingHandler, deliver, make_settings, pr_payload, running


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_deliveries_by_event_and_outcome(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), handler=RecordingHandler(), run_worker=False)
    async with running(app) as client:
        before = _samples((await client.get("/metrics")).text)
        await deliver(client, "pull_request", pr_payload("pull_request.opened"), "d-1")
        await deliver(client, "pull_request", pr_payload("pull_request.opened"), "d-1")
        await client.post("/webhook", content=b"{}", headers={"X-GitHub-Event": "evil\nname"})
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = _samples(response.text)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("reviewbot_deliveries_total", event="pull_request", outcome="queued") == 1
    assert grew("reviewbot_deliveries_total", event="pull_request", outcome="duplicate") == 1
    # An unknown header value is folded into "other", never a new label.
    assert grew("reviewbot_deliveries_total", event="other", outcome="bad_signature") == 1
    assert after[("reviewbot_queue_depth", ())] == 1
    for family in ("reviewbot_jobs", "reviewbot_review_seconds", "reviewbot_github_api_calls"):
        assert f"# TYPE {family}" in response.text
