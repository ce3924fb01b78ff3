"""The subscription state table, edge by edge, against the seed's diagram."""

from __future__ import annotations

import itertools

import pytest

from eventhub.delivery.states import Move, NotAllowed, Status, allowed, next_status

A, F, R, P, S = Status.ACTIVE, Status.FAILED, Status.REJECTED, Status.PAUSED, Status.SUSPENDED

# Every edge of 003_7ebf37db09eab8c2.txt's diagram, plus update/replay keeping Active Active,
# plus the revoked owner's pause.
EDGES = {
    (A, Move.FAIL): F,
    (F, Move.SUSPEND): S,
    (A, Move.REJECT): R,
    (A, Move.PAUSE): P,
    (F, Move.UPDATE): A,
    (F, Move.REPLAY): A,
    (F, Move.RECOVER): A,
    (R, Move.UPDATE): A,
    (R, Move.REPLAY): A,
    (P, Move.RESUME): A,
    (P, Move.RESUME_FROM_LATEST): A,
    (P, Move.UPDATE): A,
    (P, Move.REPLAY): A,
    (S, Move.UPDATE): A,
    (A, Move.UPDATE): A,
    (A, Move.REPLAY): A,
    # SPEC §8: a revoked key's subscriptions stop, Paused.
    (A, Move.REVOKE): P,
    (F, Move.REVOKE): P,
    **{(s, Move.DELETE): None for s in Status},
}


@pytest.mark.parametrize(("status", "move"), sorted(EDGES, key=str))
def test_every_edge_of_the_diagram(status: Status, move: Move) -> None:
    assert next_status(status, move) == EDGES[(status, move)]


NOT_EDGES = [(s, m) for s, m in itertools.product(Status, Move) if (s, m) not in EDGES]


@pytest.mark.parametrize(("status", "move"), NOT_EDGES)
def test_everything_else_is_refused_naming_the_state(status: Status, move: Move) -> None:
    with pytest.raises(NotAllowed) as caught:
        next_status(status, move)
    assert str(status) in str(caught.value)


def test_suspended_cannot_be_replayed_and_paused_cannot_be_paused() -> None:
    assert Move.REPLAY not in allowed(S)
    assert Move.PAUSE not in allowed(P)
    assert set(allowed(S)) == {Move.UPDATE, Move.DELETE}
