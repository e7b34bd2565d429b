"""Creates the benchmark's user, Rotator API key and pool: `python -m bench.pool_setup`.

Run under the target's environment (its DATABASE_URL or ROTATOR_VAR_DIR), after `migrate`.
Idempotent: an existing `bench` user is deleted first, so every run starts from an empty pool.
"""

import argparse
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402

from accounts.services import api_key_create, credential_add  # noqa: E402
from bench.servers import ROTATOR_KEY, upstream_secret  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--credentials", type=int, default=5)
    args = parser.parse_args()
    User.objects.filter(username="bench").delete()
    user = User.objects.create_user(username="bench", password="bench-password-1")
    api_key_create(user=user, name="bench", secret=ROTATOR_KEY)
    for index in range(args.credentials):
        credential_add(user=user, api_key=upstream_secret(index), label=f"bench-{index}")
    print(ROTATOR_KEY)


if __name__ == "__main__":
    main()
