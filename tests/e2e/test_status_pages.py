"""``alpcrun status`` on a grid whose listing is larger than one message: it follows the pages."""

from __future__ import annotations

import json
import subprocess
import sys

import grpc
import pytest

from alpcrun import proto

from .conftest import ROOT, Grid

pytestmark = pytest.mark.e2e
TAGS = [f"{i:02d}-" + "t" * 57 for i in range(64)]
"""3,840 bytes of tags per session: 300 sessions list to more than the 1 MiB message limit."""


def test_status_lists_every_session_of_a_listing_larger_than_the_message_limit(grid: Grid):
    """300 sessions with large tags under a 1 MiB limit: status shows all, in pages."""
    grid.env_extra["ALPCRUNCH_QM_MAX_MESSAGE_BYTES"] = str(1 << 20)
    grid.start_queue_manager()
    md = (("api_key", grid.api_key),)
    with grpc.insecure_channel(grid.address) as channel:
        stub = proto.QueueStub(channel)
        attrs = proto.SessionAttributes(app_id="paged", tags=TAGS)
        ids = {
            stub.CreateSession(proto.CreateSessionRequest(attributes=attrs), metadata=md).id
            for _ in range(300)
        }
    command = [sys.executable, "-m", "alpcrun.cli.main", "status", "--queue-manager"]
    command += [grid.address, "--api-key", grid.api_key]
    report = json.loads(
        subprocess.run(
            [*command, "--json"], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout
    )
    assert {s["session"]["id"] for s in report["sessions"]["sessions"]} == ids
    table = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert sum(line.startswith(tuple(ids)) for line in table.splitlines()) == 300
