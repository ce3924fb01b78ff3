"""The subscription state machine of the Celonis Event Subscription API, as a table.

    [*] --create--> Active
    Active    --transient errors, retries spent--> Failed
    Active    --rejection errors, retries spent--> Rejected
    Active    --pause--> Paused
    Active | Failed --owner's key revoked--> Paused
    Failed    --update | replay | delivery succeeded (auto-recovery)--> Active
    Failed    --8 h in Failed--> Suspended
    Rejected  --update | replay--> Active
    Paused    --resume | resume-from-latest | update | replay--> Active
    Suspended --update--> Active
    any       --delete--> [*]

Update and replay of an Active subscription keep it Active (new callback, or a rewound
cursor). Anything else is refused: the API answers 409 naming the current state.
"""

from __future__ import annotations

import enum

# Status lives in models.py (a leaf the log imports too); re-exported for the table below.
from eventhub.models import Status as Status


class Move(enum.StrEnum):
    # actions of the API consumer
    PAUSE = "pause"
    RESUME = "resume"
    RESUME_FROM_LATEST = "resume-from-latest"
    UPDATE = "update"
    REPLAY = "replay"
    DELETE = "delete"
    # what delivery finds out
    FAIL = "fail"
    REJECT = "reject"
    RECOVER = "recover"
    SUSPEND = "suspend"
    # what the hub decides
    REVOKE = "revoke"  # the owner's API key was revoked


GONE = None  # the state after delete

TRANSITIONS: dict[tuple[Status, Move], Status | None] = {
    (Status.ACTIVE, Move.FAIL): Status.FAILED,
    (Status.ACTIVE, Move.REJECT): Status.REJECTED,
    (Status.ACTIVE, Move.PAUSE): Status.PAUSED,
    (Status.ACTIVE, Move.REVOKE): Status.PAUSED,
    (Status.ACTIVE, Move.UPDATE): Status.ACTIVE,
    (Status.ACTIVE, Move.REPLAY): Status.ACTIVE,
    (Status.FAILED, Move.UPDATE): Status.ACTIVE,
    (Status.FAILED, Move.REPLAY): Status.ACTIVE,
    (Status.FAILED, Move.RECOVER): Status.ACTIVE,
    (Status.FAILED, Move.SUSPEND): Status.SUSPENDED,
    (Status.FAILED, Move.REVOKE): Status.PAUSED,
    (Status.REJECTED, Move.UPDATE): Status.ACTIVE,
    (Status.REJECTED, Move.REPLAY): Status.ACTIVE,
    (Status.PAUSED, Move.RESUME): Status.ACTIVE,
    (Status.PAUSED, Move.RESUME_FROM_LATEST): Status.ACTIVE,
    (Status.PAUSED, Move.UPDATE): Status.ACTIVE,
    (Status.PAUSED, Move.REPLAY): Status.ACTIVE,
    (Status.SUSPENDED, Move.UPDATE): Status.ACTIVE,
    **{(status, Move.DELETE): GONE for status in Status},
}


class NotAllowed(Exception):
    def __init__(self, status: Status, move: Move) -> None:
        super().__init__(f"cannot {move} a subscription in state {status}")
        self.status = status
        self.move = move


def next_status(status: Status, move: Move) -> Status | None:
    """The state after ``move``; ``None`` when the subscription is gone. Raises NotAllowed."""
    try:
        return TRANSITIONS[(status, move)]
    except KeyError:
        raise NotAllowed(status, move) from None


def allowed(status: Status) -> list[Move]:
    return [move for (s, move) in TRANSITIONS if s is status]
