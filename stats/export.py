"""Usage as CSV for a date range, one row per quota day, API key, credential and model."""

import csv
import io
from collections.abc import Iterator, Mapping
from datetime import date, timedelta
from typing import Any

from django.db.models import F, Max, Sum

from stats.models import UsageCounter

COLUMNS = (
    "day",
    "user",
    "api_key_id",
    "api_key",
    "credential_id",
    "credential",
    "model",
    *UsageCounter.COUNT_FIELDS,
)
# Spreadsheets run a cell that starts like a formula; labels and names are user input.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_ROWS_PER_CHUNK = 500


def _cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def usage_csv(*, user_id: int | None, since: date, until: date) -> Iterator[str]:
    """Yields CSV text (a header, then rows by day, key, credential and model, oldest day
    first) of the usage counters of one user (None: every user) between two quota days,
    inclusive. Keys show their masked prefix and name, credentials the label they had when
    counted (label and mask); deleted ones have an empty id. Never a secret."""
    counters = UsageCounter.objects.filter(day__gte=since, day__lte=until)
    if user_id is not None:
        counters = counters.filter(user_id=user_id)
    rows = (
        counters.values(
            "day",
            "user__username",
            "api_key_id",
            "api_key__prefix",
            "api_key__name",
            "credential_id",
            "model",
        )
        .annotate(
            credential_label=Max("credential_label"),
            **{name: Sum(name) for name in UsageCounter.COUNT_FIELDS},
        )
        # Deleted keys and credentials (NULL) last on every database.
        .order_by(
            "day",
            "user__username",
            F("api_key_id").asc(nulls_last=True),
            F("credential_id").asc(nulls_last=True),
            "model",
        )
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for number, typed_row in enumerate(rows.iterator(chunk_size=_ROWS_PER_CHUNK), start=1):
        row: Mapping[str, Any] = typed_row
        key = " ".join(part for part in (row["api_key__name"], row["api_key__prefix"]) if part)
        writer.writerow(
            [
                row["day"].isoformat(),
                _cell(row["user__username"]),
                row["api_key_id"] or "",
                _cell(key),
                row["credential_id"] or "",
                _cell(row["credential_label"]),
                _cell(row["model"]),
                *(int(row[name] or 0) for name in UsageCounter.COUNT_FIELDS),
            ]
        )
        if number % _ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# Without a range: the last 30 quota days, as /stat's charts show.
DEFAULT_RANGE_DAYS = 30


def usage_range(*, since: date | None, until: date | None, today: date) -> tuple[date, date]:
    """The export's days: `until` defaults to today, `since` to DEFAULT_RANGE_DAYS before it.
    Raises ValueError when since is after until."""
    until = until or today
    since = since or until - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if since > until:
        raise ValueError("since must not be after until")
    return since, until


def usage_csv_filename(*, since: date, until: date) -> str:
    return f"rotator-usage-{since.isoformat()}-{until.isoformat()}.csv"
