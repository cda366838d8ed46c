"""Results on their way to the client: queued, written, acknowledged, freed.

Final results of tasks are queued in the session's
:class:`~alpcrun.queue_manager.results.ResultBuffer` as result batches numbered per session.
The client stream writes them in order; with acknowledgements on, a written batch is kept
until the client's cumulative ``ResultAck`` covers it. A client batch id stays known (so a
resend of it is recognised as a duplicate) until the last result of its tasks is freed.
"""

from __future__ import annotations

from alpcrun._clock import Clock
from alpcrun.errors import InvalidArgument
from alpcrun.proto import Batch
from alpcrun.queue_manager.dispatch import Dispatcher
from alpcrun.queue_manager.ledger import Ledger
from alpcrun.queue_manager.records import SessionRecord


class ResultDelivery:
    """Queues final results for the client and frees them once it has them.

    Args:
        clock: Session activity times.
        ledger: Counts and journals results.
        dispatcher: Resumes a session's dispatch when its full result buffer frees up.
    """

    __slots__ = ("_clock", "_dispatcher", "_ledger")

    def __init__(self, *, clock: Clock, ledger: Ledger, dispatcher: Dispatcher) -> None:
        self._clock = clock
        self._ledger = ledger
        self._dispatcher = dispatcher

    def push(
        self,
        record: SessionRecord,
        batch_id: str,
        out: Batch,
        finals: int,
        ok: int,
        nbytes: int = -1,
    ) -> None:
        """Queue ``out``, holding ``finals`` final results (``ok`` successes), for the client.

        ``nbytes`` is its serialized size when the caller has it (-1: measure it).
        """
        out.id = batch_id
        out.session_id = record.id
        out.dispatch_id = 0
        record.known[batch_id] = record.known.get(batch_id, finals) - finals
        results = record.results
        held = results.bytes
        seq = results.push(out, nbytes)
        self._ledger.result_added(record, seq, out, ok, results.bytes - held)
        record.last_activity = self._clock.monotonic()
        if record.client is not None:
            record.client.results_ready()

    def written(self, record: SessionRecord, seq: int, *, keep: bool) -> None:
        """The result batch ``seq`` was written to the client; ``keep`` it until acked."""
        results = record.results
        full = self._dispatcher.results_full(record)
        head = results.peek()
        held = results.bytes
        if not results.written(seq, keep=keep):
            return
        if keep:
            return
        if head is not None:
            self._freed(record, seq, [head[1]], held - results.bytes)
        if full:
            self._dispatcher.dispatch(record)
        self._dispatcher.wake()

    def ack(self, record: SessionRecord, seq: int) -> None:
        """The client confirmed every result batch up to ``seq``."""
        if seq > record.results.seq:
            raise InvalidArgument(
                f"acknowledges {seq}, but only {record.results.seq} were sent", field="ack.seq"
            )
        results = record.results
        full = self._dispatcher.results_full(record)
        held = results.bytes
        freed = results.ack(seq)
        if freed:
            self._freed(record, seq, freed, held - results.bytes)
            if full:
                self._dispatcher.dispatch(record)
            self._dispatcher.wake()

    def _freed(self, record: SessionRecord, seq: int, batches: list[Batch], nbytes: int) -> None:
        known = record.known
        for batch in batches:
            if known.get(batch.id, 1) <= 0:
                del known[batch.id]
        self._ledger.results_freed(record, seq, nbytes)


__all__ = ["ResultDelivery"]
