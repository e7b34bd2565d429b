"""Creates the benchmark's users, Rotator API keys and pools: `python -m bench.pool_setup`.

Run under the target's environment (its DATABASE_URL or ROTATOR_VAR_DIR), after `migrate`.
`bench` holds API-key credentials; `bench-oauth` holds only OAuth accounts (the translated
path through Code Assist; the fake must know their refresh tokens before the first request).
Idempotent: existing bench users are deleted first, so every run starts from empty pools.
"""

import argparse
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402

from accounts.services import api_key_create, credential_add, oauth_account_parse  # noqa: E402
from bench.servers import (  # noqa: E402
    ROTATOR_KEY,
    ROTATOR_OAUTH_KEY,
    oauth_project,
    oauth_refresh_token,
    upstream_secret,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--credentials", type=int, default=5)
    parser.add_argument("--oauth-credentials", type=int, default=5)
    args = parser.parse_args()
    User.objects.filter(username__in=("bench", "bench-oauth")).delete()
    user = User.objects.create_user(username="bench", password="bench-password-1")
    api_key_create(user=user, name="bench", secret=ROTATOR_KEY)
    for index in range(args.credentials):
        credential_add(user=user, api_key=upstream_secret(index), label=f"bench-{index}")
    oauth_user = User.objects.create_user(username="bench-oauth", password="bench-password-2")
    api_key_create(user=oauth_user, name="bench-oauth", secret=ROTATOR_OAUTH_KEY)
    for index in range(args.oauth_credentials):
        # A stale access token: the first request refreshes it at the fake's token endpoint.
        document = {
            "access_token": "ya29.stale",
            "refresh_token": oauth_refresh_token(index),
            "token_type": "Bearer",
            "expiry_date": 0,
            "projectId": oauth_project(index),
        }
        account = oauth_account_parse(document)
        credential_add(user=oauth_user, oauth=account, label=f"bench-oauth-{index}")
    print(ROTATOR_KEY)


if __name__ == "__main__":
    main()
