"""`alpcrun dlq`: payload previews and the usage checks made before any call."""

from __future__ import annotations

import pytest

from alpcrun.cli.dlq import PREVIEW_BYTES, PREVIEW_CHARS, preview
from alpcrun.cli.main import main


def test_preview_shows_text_as_utf8_and_binary_as_hex():
    """Printable UTF-8 is quoted, other bytes are hex; both are cut short with an ellipsis."""
    assert preview(b"") == "0 bytes"
    assert preview("prix: 3€".encode()) == "10 bytes, utf-8: 'prix: 3€'"
    assert preview(b"a\tb\n") == "4 bytes, utf-8: 'a\\tb\\n'"
    long_text = b"x" * (PREVIEW_CHARS + 5)
    assert preview(long_text) == f"{len(long_text)} bytes, utf-8: '{'x' * PREVIEW_CHARS}'..."
    assert preview(b"\x00\x01\xff") == "3 bytes, hex: 00 01 ff"
    long_binary = bytes(range(PREVIEW_BYTES + 8))
    shown = preview(long_binary)
    assert shown.startswith(f"{len(long_binary)} bytes, hex: 00 01 02")
    assert shown.endswith(f"{PREVIEW_BYTES - 1:02x} ...")
    # terminal escapes are not shown as text
    assert preview(b"\x1b[31mred") == "8 bytes, hex: 1b 5b 33 31 6d 72 65 64"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["discard", "S"], "pass --all to discard every dead letter"),
        (["resubmit", "S", "--reset-attempts"], "pass --all to resubmit every dead letter"),
        (["discard", "S", "t1", "--all"], "not both"),
        (["resubmit", "S", "t1", "--all"], "not both"),
        (["list", "S", "--limit", "0"], "--limit must be 1..10000"),
        (["list", "S", "--limit", "10001"], "--limit must be 1..10000"),
    ],
)
def test_usage_errors_exit_2_before_any_call(argv, says, capsys):
    """Acting on everything needs --all; nothing is sent (no queue manager is running)."""
    assert main(["dlq", *argv, "--queue-manager", "127.0.0.1:1", "--timeout", "0"]) == 2
    assert says in capsys.readouterr().err
