"""The read side of a session's stream: reads one call's result messages, routes and acks them.

After a re-attach the queue manager writes the result messages whose acknowledgement was lost
with the old call again, with their original ``seq``; they are dropped by that number
(:class:`~alpcrun.client._pending.SeqFilter`), so each result reaches its sink once.
"""

from __future__ import annotations

from collections.abc import AsyncIterable

import grpc

from alpcrun.client._pending import SeqFilter
from alpcrun.client._router import Router
from alpcrun.client._writer import Writer
from alpcrun.errors import AlpcrunError, SessionClosed
from alpcrun.proto import ClientStreamResponse
from alpcrun.proto.status import from_rpc_error


class Reader:
    """Reads the result messages of a stream's calls, one call at a time.

    Args:
        router: Receives the results of every message not seen before.
        receipts: The session object's record of result numbers already routed.
        writer: Sends the acknowledgements.
    """

    __slots__ = ("_receipts", "_router", "_writer", "answered")

    def __init__(self, router: Router, receipts: SeqFilter, writer: Writer) -> None:
        self._router = router
        self._receipts = receipts
        self._writer = writer
        self.answered = False
        """Whether the call read last (or being read) delivered any message."""

    async def read(self, call: AsyncIterable[ClientStreamResponse]) -> AlpcrunError:
        """Route and acknowledge every message of ``call`` until it ends.

        Args:
            call: The call's responses.

        Returns:
            Why the call ended: the gRPC error, or ``SessionClosed`` when the queue manager
            ended it cleanly.
        """
        self.answered = False
        accept, route, ack = self._receipts.accept, self._router.route, self._writer.ack
        try:
            async for response in call:
                self.answered = True
                seq = response.seq
                if accept(seq):
                    route(response.results)
                if seq:
                    # Acknowledge once routed (repeats too: their first ack was lost). The
                    # queue manager keeps the results until then and writes them again to
                    # the next stream of the session otherwise.
                    ack(seq)
        except grpc.RpcError as err:
            return from_rpc_error(err)
        return SessionClosed("the queue manager ended the client stream")
