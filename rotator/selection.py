"""Which credential serves a request: pure rules over a snapshot, no ORM, cache or network.

The Redis state backend runs the same rule inside a Lua script (rotator/state.py) so that
it is atomic across processes; tests/rotator/test_state.py runs one suite over both to keep
them in agreement.
"""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Strategy(StrEnum):
    ROUND_ROBIN = "round_robin"
    FILL_FIRST = "fill_first"


@dataclass(frozen=True, slots=True)
class Picked:
    credential_id: int
    # Where the shared cursor must move to after this pick (None: leave it as the pick found it).
    cursor_after: int | None


@dataclass(frozen=True, slots=True)
class NonePicked:
    # Epoch milliseconds when the soonest marked credential comes back; None when nothing is
    # marked (every credential was tried by this request and failed for other reasons).
    soonest_until_ms: int | None


def credential_choose(
    *,
    ordered_ids: Sequence[int],
    start: int,
    strategy: Strategy,
    marked_until_ms: Mapping[int, int],
    excluded: Collection[int],
    now_ms: int,
) -> Picked | NonePicked:
    """Returns the first credential at or after position `start` (wrapping) that is neither
    excluded nor marked beyond `now_ms`, and how the cursor must move.

    `start` is the cursor as the request found it; for round robin the backend has already
    advanced the shared cursor by one for the next request, atomically with this read.
    When the pick skipped `offset` positions, round robin moves the cursor on by the same
    amount so the next request continues after the chosen credential instead of probing the
    same cooled-down run again (this keeps the cost flat when most of a pool is cooling down);
    fill first moves the cursor onto the chosen credential so later requests stay on it.
    """
    size = len(ordered_ids)
    soonest: int | None = None
    for offset in range(size):
        credential_id = ordered_ids[(start + offset) % size]
        until_ms = marked_until_ms.get(credential_id)
        if credential_id in excluded:
            # Tried by this request; if it is now marked, its return still sets Retry-After.
            if (
                until_ms is not None
                and until_ms > now_ms
                and (soonest is None or until_ms < soonest)
            ):
                soonest = until_ms
            continue
        if until_ms is None or until_ms <= now_ms:
            if offset == 0:
                return Picked(credential_id=credential_id, cursor_after=None)
            if strategy is Strategy.ROUND_ROBIN:
                # The backend already advanced the cursor by one; add the positions skipped.
                return Picked(credential_id=credential_id, cursor_after=start + offset + 1)
            return Picked(credential_id=credential_id, cursor_after=start + offset)
        if soonest is None or until_ms < soonest:
            soonest = until_ms
    return NonePicked(soonest_until_ms=soonest)


def first_in_line(*, ordered_ids: Sequence[int], cursor: int) -> int | None:
    """The credential the next request will try first (for manual rotation answers)."""
    if not ordered_ids:
        return None
    return ordered_ids[cursor % len(ordered_ids)]
