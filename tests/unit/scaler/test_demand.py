"""Reading the demand from a queue manager's exposition."""

from __future__ import annotations

import pytest

from alpcrun.scaler.demand import MetricNotFound, MetricsDemand, demand_from_exposition

EXPOSITION = """\
# HELP alpcrun_queue_depth Queued tasks over all sessions.
# TYPE alpcrun_queue_depth gauge
alpcrun_queue_depth 120.0
# HELP alpcrun_workers_wanted Workers all sessions could use now.
# TYPE alpcrun_workers_wanted gauge
alpcrun_workers_wanted 7.0
# HELP alpcrun_session_workers_wanted Workers a session could use now.
# TYPE alpcrun_session_workers_wanted gauge
alpcrun_session_workers_wanted{app_id="pricing",session_id="01A"} 4.0
alpcrun_session_workers_wanted{app_id="pricing",session_id="01B"} 2.0
alpcrun_session_workers_wanted{app_id="risk",session_id="01C"} 1.0
"""


def test_reads_a_gauge():
    """The value of an unlabelled gauge."""
    assert demand_from_exposition(EXPOSITION, "alpcrun_workers_wanted") == 7
    assert demand_from_exposition(EXPOSITION, "alpcrun_queue_depth") == 120


def test_sums_one_applications_sessions():
    """app_id keeps only that application's per-session series, summed."""
    assert demand_from_exposition(EXPOSITION, "alpcrun_session_workers_wanted") == 7
    got = demand_from_exposition(EXPOSITION, "alpcrun_session_workers_wanted", app_id="pricing")
    assert got == 6
    assert demand_from_exposition(EXPOSITION, "alpcrun_session_workers_wanted", app_id="x") == 0


def test_missing_metric_is_an_error_not_zero():
    """A metric that is not exported at all must not read as 'no demand'."""
    with pytest.raises(MetricNotFound):
        demand_from_exposition(EXPOSITION, "alpcrun_session_queue_depth")


def test_refuses_unknown_metric_and_non_http_url():
    """Only the scaling gauges, only over http(s)."""
    with pytest.raises(ValueError, match="cannot scale on"):
        MetricsDemand("http://qm:9337/metrics", "alpcrun_tasks_completed_total")
    with pytest.raises(ValueError, match="http"):
        MetricsDemand("file:///etc/passwd", "alpcrun_queue_depth")
