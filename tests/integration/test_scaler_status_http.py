"""The scaler's status endpoint served over HTTP: /healthz, /readyz and /metrics."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from alpcrun.scaler.policy import Decision, Reason
from alpcrun.scaler.status import ScalerStatus, StatusServer
from alpcrun.testing import FakeClock

pytestmark = pytest.mark.integration


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def served():
    clock = FakeClock()
    status = ScalerStatus(clock=clock, stale_after_s=10)
    server = StatusServer(status, host="127.0.0.1", port=0)
    server.start()
    try:
        yield clock, status, f"http://127.0.0.1:{server.port}"
    finally:
        server.close()


def test_http_endpoints_answer_with_the_status(served):
    """/healthz and /readyz answer 200 or 503 with the reason; /metrics the text format."""
    clock, status, base = served
    assert _get(base + "/healthz") == (200, "ok\n")
    assert _get(base + "/readyz") == (503, "no round yet\n")
    status.succeeded(2.0, Decision(1, 2, 2, Reason.SCALE_UP))
    assert _get(base + "/readyz") == (200, "ok\n")
    code, text = _get(base + "/metrics")
    assert code == 200
    assert "alpcrun_scaler_replicas 2.0" in text
    clock.advance(11)
    code, why = _get(base + "/healthz")
    assert code == 503
    assert "no round finished" in why
    assert _get(base + "/nope")[0] == 404
