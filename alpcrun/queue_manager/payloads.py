"""The payload catalog's duties on the queue manager's tick, tied to sessions and attempts.

Leases belong to task attempts: a worker names its leases ``<worker id>/<dispatch id>``. On
every tick the leases of an attempt still in flight on a registered worker are renewed (the
worker's heartbeats keep it registered), and those of an attempt that ended, failed, timed
out or whose worker was lost are released. A client's leases (``client/<session id>``) last
while its session is open. The payloads of a session that closed are deleted (unless kept
or given a TTL), and the catalog's own timers run (lapsed leases, abandoned allocations,
TTLs, silent nodes). Sans-I/O: the clock is the catalog's.
"""

from __future__ import annotations

import logging

from alpcrun.payload.catalog import Catalog
from alpcrun.queue_manager.core import QueueCore

log = logging.getLogger("alpcrun.queue_manager.payloads")
CLIENT_HOLDER = "client/"
"""Prefix of the lease holders of clients (followed by the session id)."""


class PayloadDuties:
    """Runs the catalog's periodic duties against the core's sessions and attempts.

    Args:
        catalog: The payload catalog.
        core: The queue manager core (sessions, workers and their in-flight attempts).
    """

    def __init__(self, catalog: Catalog, core: QueueCore) -> None:
        self.catalog = catalog
        self.core = core
        self.lost = 0
        """Payloads found without a replica since start."""
        self._closed: set[str] = set()  # sessions whose payloads were already let go

    def live(self, holder: str) -> bool:
        """Whether the lease holder's attempt (or client session) is still running."""
        if holder.startswith(CLIENT_HOLDER):
            record = self.core.sessions.get(holder[len(CLIENT_HOLDER) :])
            return record is not None and not record.closed
        worker_id, _, dispatch = holder.partition("/")
        worker = self.core.workers.get(worker_id)
        if worker is None or not dispatch.isdigit():
            return False
        return int(dispatch) in worker.inflight

    def tick(self) -> None:
        """Renew or release leases, delete closed sessions' payloads, run the catalog's timers."""
        cat = self.catalog
        for holder in cat.leases.holders():
            if self.live(holder):
                cat.renew(holder)
        cat.release_where(lambda holder: not self.live(holder))
        sessions = self.core.sessions
        holding = cat.session_ids()
        for sid in holding:
            record = sessions.get(sid)
            if sid not in self._closed and (record is None or record.closed):
                cat.close_session(sid)
                self._closed.add(sid)
        self._closed.intersection_update(holding)
        _, unreadable = cat.tick()
        if unreadable:
            self.lost += len(unreadable)
            log.warning("%d payloads lost their last replica: %s", len(unreadable), unreadable[:10])


__all__ = ["CLIENT_HOLDER", "PayloadDuties"]
