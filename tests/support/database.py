"""Reading the whole test database as text, to prove a secret is stored nowhere in plain."""

from django.db import connection


def database_text() -> str:
    """Every value of every column of every row of every table, as one string."""
    values = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                values.extend(
                    bytes(v).decode("latin-1") if isinstance(v, bytes | memoryview) else str(v)
                    for v in row
                )
    return "\n".join(values)
