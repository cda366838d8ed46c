"""Fixtures shared by the raw-protocol integration tests (bad input, cut streams, dead letters)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc.aio
import pytest

from alpcrun.testing import running_queue_manager

from .checks import MD, ErrorLog, Grid, qm_settings


@pytest.fixture
def no_error_logs() -> Iterator[None]:
    """No servicer exception and no task exception nobody retrieved, whatever the statuses.

    Opt in with ``pytest.mark.usefixtures("no_error_logs")``.
    """
    with ErrorLog.installed() as log:
        yield
    assert not log.records, log.describe()


@pytest.fixture
async def grid() -> AsyncIterator[Grid]:
    """A queue manager with the test limits, and a raw channel to it (a test file may define
    its own ``grid``, which then wins)."""
    async with running_queue_manager(**qm_settings()) as qm:
        async with grpc.aio.insecure_channel(qm.address) as channel:
            yield Grid(channel, MD)
