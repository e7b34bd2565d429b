"""Model aliases: which Gemini model serves a client's model name (one rule, one cache)."""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from rotator.models import ModelAlias
from rotator.orm import orm_call
from rotator.state import state_backend


@dataclass(frozen=True, slots=True)
class Alias:
    name: str
    target: str
    # None: a global alias.
    user_id: int | None

    @property
    def is_pattern(self) -> bool:
        return "*" in self.name

    @property
    def literal_prefix(self) -> str:
        return self.name.split("*", 1)[0]


@dataclass(frozen=True, slots=True)
class AliasTable:
    version: int
    global_aliases: tuple[Alias, ...]
    user_aliases: dict[int, tuple[Alias, ...]]

    def of_user(self, user_id: int) -> tuple[Alias, ...]:
        """The aliases `user_id` may call, best first: theirs, then the global ones whose
        name they have not taken."""
        own = self.user_aliases.get(user_id, ())
        taken = {alias.name for alias in own}
        return own + tuple(a for a in self.global_aliases if a.name not in taken)


@lru_cache(maxsize=1024)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    # fnmatch-style with `*` only: '?' and '[' cannot occur in names (see ALIAS_NAME_PATTERN).
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def _best_match(requested: str, aliases: Iterable[Alias]) -> Alias | None:
    patterns: list[Alias] = []
    for alias in aliases:
        if not alias.is_pattern:
            if alias.name == requested:
                return alias
        elif _pattern_regex(alias.name).fullmatch(requested):
            patterns.append(alias)
    if not patterns:
        return None
    # Most specific first: the longest literal prefix, then the most literal characters, then
    # the name, so that the choice never depends on row order.
    return min(
        patterns,
        key=lambda a: (-len(a.literal_prefix), -len(a.name.replace("*", "")), a.name),
    )


def alias_resolve(
    *, requested: str, user_aliases: Sequence[Alias], global_aliases: Sequence[Alias]
) -> str:
    """Returns the Gemini model that serves `requested` (itself when no alias matches).

    The rule: a user's own aliases win over global ones (even a user's pattern over a global
    exact name); within each set an exact name wins over a pattern, and among matching
    patterns the longest literal prefix (the text before the first `*`) wins. Targets are not
    resolved again: an alias never leads to another alias.
    """
    for aliases in (user_aliases, global_aliases):
        match = _best_match(requested, aliases)
        if match is not None:
            return match.target
    return requested


def aliases_load(*, version: int) -> AliasTable:
    """Reads every alias from the database, as one table stamped with `version`."""
    global_aliases: list[Alias] = []
    user_aliases: dict[int, list[Alias]] = {}
    for user_id, name, target in ModelAlias.objects.values_list("user_id", "name", "target"):
        alias = Alias(name=name, target=target, user_id=user_id)
        if user_id is None:
            global_aliases.append(alias)
        else:
            user_aliases.setdefault(user_id, []).append(alias)
    return AliasTable(
        version=version,
        global_aliases=tuple(global_aliases),
        user_aliases={user_id: tuple(rows) for user_id, rows in user_aliases.items()},
    )


_table: AliasTable | None = None


async def alias_table_current() -> AliasTable:
    """This process's alias table, reloaded when the shared version says an alias changed
    anywhere (one state-backend read per call, one query after a change)."""
    global _table
    version = await state_backend().aliases_version()
    table = _table
    if table is None or table.version != version:
        table = await orm_call(aliases_load)(version=version)
        _table = table
    return table


@dataclass(frozen=True, slots=True)
class Resolution:
    """The Gemini model a client's name resolved to, and the alias table it came from."""

    model: str
    version: int
    # Whether `version` was read from the shared state for this resolution. Otherwise it is
    # this process's copy, possibly older than an alias changed elsewhere: the request's pick
    # confirms it (pool.credential_pick), at no round trip of its own.
    confirmed: bool


async def model_resolve(*, user_id: int, requested: str, confirm: bool) -> Resolution:
    """Returns the Gemini model that serves `requested` for `user_id` (rule: alias_resolve).

    `confirm` reads the shared version first (one state read, a reload after a change);
    without it this process's table is used as it is, and read only when it has none.
    """
    table = None if confirm else _table
    confirmed = table is None
    if table is None:
        table = await alias_table_current()
    if not table.global_aliases and not table.user_aliases:
        model = requested
    else:
        model = alias_resolve(
            requested=requested,
            user_aliases=table.user_aliases.get(user_id, ()),
            global_aliases=table.global_aliases,
        )
    return Resolution(model=model, version=table.version, confirmed=confirmed)


def aliases_invalidate() -> None:
    """Tells every process that an alias changed (the next request reloads them)."""
    state_backend().aliases_invalidate()
