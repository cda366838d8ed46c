"""Prometheus exposition of the core's statistics (nothing on the hot path).

Each scrape takes ``QueueCore.statistics()`` on the event loop (:func:`make_registry`), so
the core is never read from another thread while the loop changes it; the figures are then
rendered as text on the metrics endpoint's thread.

| metric | type | labels | meaning |
|---|---|---|---|
| alpcrun_queue_depth | gauge | | queued tasks over all sessions (the HPA metric) |
| alpcrun_session_queue_depth | gauge | session_id, app_id | queued tasks of one session |
| alpcrun_workers_wanted | gauge | | workers all sessions could use now |
| alpcrun_session_workers_wanted | gauge | session_id, app_id | workers one session could use |
| alpcrun_session_bound_workers | gauge | session_id, app_id | workers bound to one session |
| alpcrun_tasks_inflight | gauge | | tasks dispatched to workers, unanswered |
| alpcrun_results_buffered | gauge | | result batches waiting for a client |
| alpcrun_sessions | gauge | state | sessions by state |
| alpcrun_workers | gauge | state | workers by state (idle, bound, draining) |
| alpcrun_tasks_submitted_total | counter | | tasks accepted |
| alpcrun_tasks_completed_total | counter | | tasks that succeeded |
| alpcrun_tasks_failed_total | counter | | tasks dead-lettered |
| alpcrun_batches_dispatched_total | counter | | batches sent to workers |
| alpcrun_session_inflight_batches | gauge | session_id, app_id | batches dispatched, unanswered |
| alpcrun_session_preemptions | gauge | session_id, app_id | workers taken from the session |
| alpcrun_binds_total | counter | | workers bound to sessions |
| alpcrun_unbinds_total | counter | reason | unbinds by reason (see ``UnbindReason``) |
| alpcrun_preemptions_total | counter | | workers preempted for higher-priority sessions |
| alpcrun_sessions_expired_total | counter | | sessions closed by ``session_expiry`` |
| alpcrun_workers_lost_total | counter | | workers declared lost |
| alpcrun_task_retries_total | counter | | task attempts that failed and were tried again |
| alpcrun_attempts_timed_out_total | counter | | attempts failed by ``task_timeout`` |
| alpcrun_duplicates_dropped_total | counter | kind | dropped late results / resent batches |
| alpcrun_dead_letters | gauge | | tasks in dead-letter queues |
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alpcrun.payload.catalog import Catalog
from alpcrun.payload.metrics import PayloadCollector
from alpcrun.proto import SessionState
from alpcrun.queue_manager.core import QueueCore
from alpcrun.queue_manager.scheduler import UnbindReason
from alpcrun.queue_manager.stats import CoreStatistics

_STATE_NAMES: dict[int, str] = {
    SessionState.SESSION_STATE_ACTIVE: "active",
    SessionState.SESSION_STATE_IDLE: "idle",
    SessionState.SESSION_STATE_CLOSED: "closed",
}


class CoreCollector(Collector):
    """The metric families of one ``QueueCore.statistics()`` snapshot (any thread)."""

    def __init__(self, stats: CoreStatistics) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family."""
        st = self.stats
        labels = ["session_id", "app_id"]
        depth = GaugeMetricFamily(
            "alpcrun_session_queue_depth", "Queued tasks of a session.", labels=labels
        )
        wanted = GaugeMetricFamily(
            "alpcrun_session_workers_wanted", "Workers a session could use now.", labels=labels
        )
        bound = GaugeMetricFamily(
            "alpcrun_session_bound_workers", "Workers bound to a session.", labels=labels
        )
        inflight = GaugeMetricFamily(
            "alpcrun_session_inflight_batches",
            "Batches of a session dispatched and unanswered.",
            labels=labels,
        )
        preempted = GaugeMetricFamily(
            "alpcrun_session_preemptions",
            "Workers taken from a session for higher-priority sessions.",
            labels=labels,
        )
        states = GaugeMetricFamily("alpcrun_sessions", "Sessions by state.", labels=["state"])
        by_state = dict.fromkeys(_STATE_NAMES.values(), 0)
        for s in st.sessions:
            by_state[_STATE_NAMES.get(s.state, "active")] += 1
            if s.state == SessionState.SESSION_STATE_CLOSED:
                continue
            key = [s.session_id, s.app_id]
            depth.add_metric(key, s.pending_tasks)
            wanted.add_metric(key, s.wanted_workers)
            bound.add_metric(key, s.bound_workers)
            inflight.add_metric(key, s.inflight_batches)
            preempted.add_metric(key, s.preemptions)
        for name, count in by_state.items():
            states.add_metric([name], count)
        yield GaugeMetricFamily(
            "alpcrun_queue_depth",
            "Queued tasks over all sessions.",
            value=sum(s.pending_tasks for s in st.sessions),
        )
        yield GaugeMetricFamily(
            "alpcrun_workers_wanted",
            "Workers all sessions could use now.",
            value=sum(s.wanted_workers for s in st.sessions),
        )
        yield depth
        yield wanted
        yield bound
        yield inflight
        yield preempted
        yield states
        yield GaugeMetricFamily(
            "alpcrun_tasks_inflight",
            "Tasks dispatched and unanswered.",
            value=sum(s.inflight_tasks for s in st.sessions),
        )
        yield GaugeMetricFamily(
            "alpcrun_results_buffered",
            "Result batches waiting for a client.",
            value=sum(s.buffered_results for s in st.sessions),
        )
        workers = GaugeMetricFamily("alpcrun_workers", "Workers by state.", labels=["state"])
        workers.add_metric(["idle"], st.idle_workers)
        workers.add_metric(["bound"], st.bound_workers)
        workers.add_metric(["draining"], st.draining_workers)
        yield workers
        for name, doc, value in (
            ("alpcrun_tasks_submitted", "Tasks accepted.", st.submitted),
            ("alpcrun_tasks_completed", "Tasks that succeeded.", st.completed),
            ("alpcrun_tasks_failed", "Tasks dead-lettered.", st.failed),
            ("alpcrun_batches_dispatched", "Batches sent to workers.", st.dispatched_batches),
            ("alpcrun_binds", "Workers bound to sessions.", st.binds),
            ("alpcrun_sessions_expired", "Sessions closed by expiry.", st.sessions_expired),
            ("alpcrun_workers_lost", "Workers declared lost.", st.workers_lost),
            ("alpcrun_task_retries", "Task attempts failed and tried again.", st.retried_tasks),
            (
                "alpcrun_attempts_timed_out",
                "Attempts failed by task_timeout.",
                st.timed_out_attempts,
            ),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        dupes = CounterMetricFamily(
            "alpcrun_duplicates_dropped",
            "Late results of abandoned attempts and client batches sent again, dropped.",
            labels=["kind"],
        )
        dupes.add_metric(["result"], st.duplicate_results)
        dupes.add_metric(["batch"], st.duplicate_batches)
        yield dupes
        yield GaugeMetricFamily(
            "alpcrun_dead_letters", "Tasks in dead-letter queues.", value=st.dead_letters
        )
        reasons = dict(st.unbinds_by_reason)
        unbinds = CounterMetricFamily(
            "alpcrun_unbinds", "Workers unbound from sessions, by reason.", labels=["reason"]
        )
        for reason in UnbindReason:
            unbinds.add_metric([reason.value], reasons.get(reason.value, 0))
        yield unbinds
        yield CounterMetricFamily(
            "alpcrun_preemptions",
            "Workers preempted for higher-priority sessions.",
            value=reasons.get(UnbindReason.PREEMPTED.value, 0),
        )


def make_registry(core: QueueCore, catalog: Catalog | None = None) -> CollectorRegistry:
    """The queue manager's metrics as they are now: call on the event loop, render anywhere.

    With the payload ``catalog``, its metrics too (:mod:`alpcrun.payload.metrics`).
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CoreCollector(core.statistics()))
    if catalog is not None:
        registry.register(PayloadCollector(catalog.statistics()))
    return registry
