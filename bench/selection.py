"""Selection cost: microseconds per `rotator.pool.credential_pick` at 10, 1,000 and 10,000
credentials with 90% of them cooling down for the model.

Run by `python -m bench` under each profile's environment (the state backend follows
REDIS_URL as in production): `python -m bench.selection --sizes 10 1000 10000 --picks 2000`.
Prints one JSON line: {"backend": ..., "results": [{"credentials": N, "us_per_pick": ...}]}.
"""

import argparse
import asyncio
import hashlib
import json
import os
import random
import time
from datetime import timedelta

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from asgiref.sync import sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402

from accounts.models import Credential  # noqa: E402
from accounts.secrets import encrypt, mask  # noqa: E402
from accounts.services import api_key_create  # noqa: E402
from common import clock  # noqa: E402
from rotator import pool  # noqa: E402
from rotator.models import Mark, PoolState  # noqa: E402

MODEL = "gemini-2.5-flash"
COOLING_SHARE = 0.9


def _pool_create(*, size: int) -> tuple[str, set[int]]:
    """A user with `size` credentials, 90% of them marked for MODEL for an hour. Returns the
    Rotator key's secret and the ids of the marked credentials."""
    name = f"select-{size}"
    User.objects.filter(username=name).delete()
    user = User.objects.create_user(username=name, password="select-password-1")
    PoolState.objects.create(user=user)
    _, secret = api_key_create(user=user, name=name)
    encrypted = encrypt("AIzaSelect" + "x" * 29)
    Credential.objects.bulk_create(
        [
            Credential(
                user=user,
                kind=Credential.Kind.GEMINI_API_KEY,
                label=f"select-{index}",
                secret_encrypted=encrypted,
                secret_digest=hashlib.sha256(f"{name}-{index}".encode()).hexdigest(),
                secret_mask=mask(f"AIzaSelect{index:08d}xxxx"),
                position=index + 1,
            )
            for index in range(size)
        ],
        batch_size=2000,
    )
    ids = list(Credential.objects.filter(user=user).values_list("id", flat=True))
    # Scattered, not a block: a fixed seed so every run cools the same credentials.
    marked = set(random.Random(size).sample(ids, int(size * COOLING_SHARE)))
    until = clock.now() + timedelta(hours=1)
    Mark.objects.bulk_create(
        [
            Mark(
                credential_id=credential_id,
                model=MODEL,
                reason=Mark.Reason.RATE_LIMITED,
                until=until,
                message="bench",
            )
            for credential_id in marked
        ],
        batch_size=2000,
    )
    return secret, marked


async def pick_cost(*, size: int, picks: int) -> dict[str, float]:
    """Microseconds per pick, amortised over `picks` picks after a warm-up."""
    secret, marked = await sync_to_async(_pool_create)(size=size)
    pool.process_state_forget()
    key = await pool.api_key_authenticate(presented=secret, now=clock.now())

    async def pick() -> int:
        credential = await pool.credential_pick(
            key=key, model=MODEL, excluded=(), first_attempt=True, now=clock.now()
        )
        return credential.id

    for _ in range(20):  # loads the snapshot, installs order and marks in the backend
        await pick()
    chosen: set[int] = set()
    started = time.perf_counter()
    for _ in range(picks):
        chosen.add(await pick())
    elapsed = time.perf_counter() - started
    if chosen & marked:
        raise AssertionError(f"{len(chosen & marked)} cooling credentials were picked")
    return {
        "credentials": size,
        "cooling": len(marked),
        "picks": picks,
        "us_per_pick": elapsed / picks * 1e6,
        "distinct_picked": len(chosen),
    }


async def _main(sizes: list[int], picks: int) -> list[dict[str, float]]:
    return [await pick_cost(size=size, picks=picks) for size in sizes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1000, 10000])
    parser.add_argument("--picks", type=int, default=2000)
    args = parser.parse_args()
    results = asyncio.run(_main(args.sizes, args.picks))
    backend = "redis" if settings.REDIS_URL else "database"
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(
        "SELECTION_JSON " + json.dumps({"backend": backend, "database": engine, "results": results})
    )


if __name__ == "__main__":
    main()
