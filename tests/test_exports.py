"""The public API surfaces are pinned: changing them is a deliberate act."""

import alpcrun.client
import alpcrun.errors
import workers_sdk


def test_client_exports():
    assert sorted(alpcrun.client.__all__) == [
        "AsyncClient",
        "AsyncDeadLetters",
        "AsyncSession",
        "Client",
        "DeadLetterInfo",
        "DeadLetterOutcome",
        "DeadLetterPage",
        "DeadLetters",
        "PayloadView",
        "Progress",
        "Session",
        "TaskHandle",
        "TaskInput",
        "TaskResult",
        "Tier",
    ]


def test_every_error_derives_from_the_root():
    """Every exported error class derives from AlpcrunError."""
    for name in alpcrun.errors.__all__:
        assert issubclass(getattr(alpcrun.errors, name), alpcrun.errors.AlpcrunError)
    assert issubclass(workers_sdk.NonRetryableError, alpcrun.errors.AlpcrunError)
