"""``alpcrun status`` output: names from the grid reach the terminal escaped, never raw."""

from __future__ import annotations

import pytest

from alpcrun import proto
from alpcrun.cli.commands import _print_status, shown

ESC, RLO, NUL = "\x1b", "\u202e", "\x00"


def test_shown_escapes_controls_bidi_overrides_and_separators_and_keeps_printable_text():
    """ESC, NUL, RLO, U+2028 and a tag character come out as escapes; plain text as it is."""
    assert shown("pricing-émoji ✓ 42") == "pricing-émoji ✓ 42"
    assert shown(f"a{ESC}[2Jb") == "a\\x1b[2Jb"
    assert shown(f"{RLO}gpj.exe") == "\\u202egpj.exe"
    assert shown(f"x{NUL}y\u2028z\U000e0041") == "x\\x00y\\u2028z\\U000e0041"
    assert shown(f"back\\slash{ESC}") == "back\\\\slash\\x1b"  # unambiguous once escaping


def test_status_prints_app_ids_tags_nodes_pods_labels_and_reasons_escaped(
    capsys: pytest.CaptureFixture[str],
):
    """A report built from hostile names holds no raw control or bidi character."""
    attrs = proto.SessionAttributes(app_id=f"app{ESC}]0;owned{NUL}", tags=[f"t{RLO}ag"])
    info = proto.SessionInfo(
        session=proto.Session(id="01SESSION", attributes=attrs),
        stats=proto.SessionStats(waiting_code="no_matching_worker", waiting_reason=f"sel {ESC}x"),
    )
    worker = proto.WorkerInfo(
        id="01WORKER", node=f"node{ESC}[31m", pod=f"pod{RLO}", labels={f"k{ESC}": f"v{RLO}"}
    )
    _print_status(
        "127.0.0.1:1337",
        proto.Stats(version="0.1.0"),
        proto.ListSessionsResponse(sessions=[info]),
        proto.ListWorkersResponse(workers=[worker]),
    )
    out = capsys.readouterr().out
    assert not {ESC, RLO, NUL} & set(out)
    for escaped in ("app\\x1b]0;own", "t\\u202eag", "sel \\x1bx", "node\\x1b[31m", "pod\\u202e"):
        assert escaped in out
    assert "k\\x1b=v\\u202e" in out
