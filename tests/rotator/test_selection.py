"""Selection rules, pure: a snapshot and now in, a choice out."""

from hypothesis import given
from hypothesis import strategies as st

from rotator.selection import NonePicked, Picked, Strategy, credential_choose, first_in_line

IDS = [11, 12, 13, 14]


def choose(**overrides):
    arguments = {
        "ordered_ids": IDS,
        "start": 0,
        "strategy": Strategy.ROUND_ROBIN,
        "marked_until_ms": {},
        "excluded": (),
        "now_ms": 1_000,
    }
    arguments.update(overrides)
    return credential_choose(**arguments)


def test_it_takes_the_credential_at_the_cursor():
    assert choose(start=2) == Picked(credential_id=13, cursor_after=None)


def test_it_wraps_around_the_pool():
    assert choose(start=5) == Picked(credential_id=12, cursor_after=None)


def test_it_skips_credentials_in_cooldown_and_moves_the_cursor_past_the_choice():
    picked = choose(start=0, marked_until_ms={11: 5_000, 12: 5_000})
    assert picked == Picked(credential_id=13, cursor_after=3)


def test_fill_first_moves_the_cursor_onto_the_choice():
    picked = choose(strategy=Strategy.FILL_FIRST, marked_until_ms={11: 5_000})
    assert picked == Picked(credential_id=12, cursor_after=1)


def test_a_lapsed_mark_does_not_count():
    assert choose(marked_until_ms={11: 1_000}) == Picked(credential_id=11, cursor_after=None)


def test_it_skips_credentials_this_request_already_tried():
    assert choose(excluded=(11,)).credential_id == 12


def test_when_all_are_marked_it_names_the_soonest_return():
    outcome = choose(marked_until_ms={11: 9_000, 12: 4_000, 13: 7_000, 14: 5_000})
    assert outcome == NonePicked(soonest_until_ms=4_000)


def test_when_all_were_tried_there_is_no_return_time():
    assert choose(excluded=tuple(IDS)) == NonePicked(soonest_until_ms=None)


def test_a_tried_credential_that_got_marked_still_sets_the_return_time():
    outcome = choose(excluded=tuple(IDS), marked_until_ms={12: 8_000})
    assert outcome == NonePicked(soonest_until_ms=8_000)


def test_first_in_line_follows_the_cursor():
    assert first_in_line(ordered_ids=IDS, cursor=6) == 13
    assert first_in_line(ordered_ids=[], cursor=6) is None


@given(
    start=st.integers(min_value=0, max_value=10_000),
    marks=st.dictionaries(st.sampled_from(IDS), st.integers(0, 2_000)),
    excluded=st.sets(st.sampled_from(IDS)),
)
def test_a_choice_is_never_marked_nor_excluded(start, marks, excluded):
    outcome = choose(start=start, marked_until_ms=marks, excluded=tuple(excluded))
    if isinstance(outcome, Picked):
        assert outcome.credential_id not in excluded
        assert marks.get(outcome.credential_id, 0) <= 1_000
    else:
        assert all(i in excluded or marks.get(i, 0) > 1_000 for i in IDS)
