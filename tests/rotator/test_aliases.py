"""Which Gemini model serves a client's model name: the pure rule (no database)."""

from rotator.aliases import Alias, alias_resolve


def aliases(user_id: int | None, **names: str) -> list[Alias]:
    return [Alias(name=name, target=target, user_id=user_id) for name, target in names.items()]


GLOBAL = [
    *aliases(None, **{"claude-*": "gemini-2.5-pro", "claude-*-haiku-*": "gemini-2.5-flash"}),
    *aliases(None, **{"claude-haiku-*": "gemini-2.5-flash", "gpt-4o*": "gemini-2.5-flash"}),
    *aliases(None, **{"claude-sonnet-4-5": "gemini-3-pro-preview"}),
]


def resolve(name: str, user: list[Alias] | None = None) -> str:
    return alias_resolve(requested=name, user_aliases=user or [], global_aliases=GLOBAL)


def test_a_name_without_an_alias_is_served_by_itself():
    assert resolve("gemini-2.5-flash") == "gemini-2.5-flash"
    assert resolve("mistral-large") == "mistral-large"


def test_an_exact_name_wins_over_a_pattern_that_also_matches_it():
    assert resolve("claude-sonnet-4-5") == "gemini-3-pro-preview"
    assert resolve("claude-sonnet-4-5-20250929") == "gemini-2.5-pro"


def test_among_patterns_the_longest_literal_prefix_wins():
    assert (
        resolve("claude-haiku-4-5-20251001") == "gemini-2.5-flash"
    )  # claude-haiku-* over claude-*
    # Same prefix "claude-": the pattern with more literal text is the more specific one.
    assert resolve("claude-3-5-haiku-20241022") == "gemini-2.5-flash"
    assert resolve("claude-3-opus-20240229") == "gemini-2.5-pro"


def test_a_users_alias_wins_over_a_global_one_even_a_pattern_over_an_exact_name():
    own = aliases(7, **{"claude-*": "gemini-2.5-flash-lite"})
    assert resolve("claude-sonnet-4-5", own) == "gemini-2.5-flash-lite"
    assert resolve("gpt-4o-mini", own) == "gemini-2.5-flash"  # not theirs: the global one


def test_only_the_star_is_special_and_a_pattern_must_match_the_whole_name():
    assert resolve("gpt-4o") == "gemini-2.5-flash"  # `*` matches nothing too
    assert resolve("my-gpt-4o") == "my-gpt-4o"
    dotted = aliases(None, **{"gemini-2.5*": "gemini-3-flash-preview"})
    assert alias_resolve(requested="gemini-205", user_aliases=[], global_aliases=dotted) == (
        "gemini-205"
    )


def test_targets_are_not_resolved_again():
    chain = aliases(None, a="b", b="gemini-2.5-pro")
    assert alias_resolve(requested="a", user_aliases=[], global_aliases=chain) == "b"
