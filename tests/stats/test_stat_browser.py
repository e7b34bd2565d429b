"""A real headless Chromium (Debian's, driven by Playwright) signs in on /stat, clicks an
exhausted cell and reads upstream's reason, and reads the landing page at `/`; the
screenshots it saves are the README's and docs/landing.png."""

import json
from datetime import timedelta
from pathlib import Path

from django.conf import settings as django_settings
from playwright.sync_api import expect, sync_playwright

from accounts.models import Credential
from accounts.services import api_key_create
from common import clock
from rotator.models import Mark
from stats.models import UsageCounter

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path(django_settings.BASE_DIR) / "docs" / "stat.png"
LANDING_SCREENSHOT = Path(django_settings.BASE_DIR) / "docs" / "landing.png"
QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. "
    "Quota exceeded for metric: generativelanguage.googleapis.com/"
    "generate_content_free_tier_requests, limit: 250, model: gemini-2.5-flash "
    "(quotaId: GenerateRequestsPerDayPerProjectPerModel-FreeTier)"
)
MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite", "gemini-embedding-001")


def _seed(persona) -> None:
    """A pool with a month of traffic, one exhausted cell, one rate-limited and one invalid."""
    now = clock.now()
    today = clock.quota_day(now)
    names = ["personal", "team-a", "team-b"]
    for credential, name in zip(persona.credentials, names, strict=True):
        credential.label = name
        credential.project_label = f"project-{name}"
        credential.save(update_fields=["label", "project_label"])
    exhausted, limited, invalid = persona.credentials
    Credential.objects.filter(id=invalid.id).update(
        status=Credential.Status.INVALID,
        last_error="API key not valid. Please pass a valid API key.",
        last_error_at=now,
    )
    ci_key, _ = api_key_create(user=persona.user, name="ci pipeline")
    rows = []
    for back in range(30):
        day = today - timedelta(days=back)
        for m, model in enumerate(MODELS):
            for c, credential in enumerate(persona.credentials):
                requests = (back * 7 + m * 13 + c * 5) % 40 + (30 if m == 0 else 5)
                failures = (back + c + m) % 6 if (back + 1) % 4 else 0
                key = persona.api_key if (back + c) % 3 else ci_key
                rows.append(
                    UsageCounter(
                        bucket=f"{day.isoformat()}|{key.id}|{credential.id}|{model}",
                        day=day,
                        user=persona.user,
                        api_key=key,
                        credential=credential,
                        model=model,
                        requests=requests,
                        successes=requests - failures,
                        failures=failures,
                        rate_limited=failures // 2,
                        prompt_tokens=requests * 210,
                        completion_tokens=requests * 340,
                        total_tokens=requests * 550,
                    )
                )
    UsageCounter.objects.bulk_create(rows)
    Mark.objects.create(
        credential=exhausted,
        model="gemini-2.5-flash",
        reason=Mark.Reason.QUOTA_EXHAUSTED,
        until=clock.daily_reset_next(now),
        message=QUOTA_MESSAGE,
    )
    Mark.objects.create(
        credential=limited,
        model="gemini-2.5-pro",
        reason=Mark.Reason.RATE_LIMITED,
        until=now + timedelta(seconds=42),
        message="Resource has been exhausted (e.g. check quota). Please retry in 41.9s.",
    )


def test_chromium_signs_in_clicks_an_exhausted_cell_and_reads_upstreams_reason(
    live, alice, bob, chat
):
    _seed(alice)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1100})
            # The page's own timers run on a clock the test moves, so the refresh needs no wait.
            page.clock.install()
            external = []
            page.on(
                "request",
                lambda request: (
                    external.append(request.url) if not request.url.startswith(live) else None
                ),
            )
            page.goto(f"{live}/stat")
            page.fill("#key", alice.key)
            page.click("button[type=submit]")

            cell = page.locator('td.mark-exhausted[data-model="gemini-2.5-flash"]')
            expect(cell).to_have_count(1)
            expect(page.locator("#reset-in")).to_contain_text("m ")
            expect(page.locator("td.mark-invalid")).to_have_count(len(MODELS))
            expect(page.locator("#charts svg")).to_have_count(3)
            cell.click()
            dialog = page.locator("#detail")
            expect(dialog).to_be_visible()
            expect(dialog).to_contain_text("Quota exhausted")
            expect(dialog).to_contain_text("GenerateRequestsPerDayPerProjectPerModel-FreeTier")
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
            page.click("#detail button")
            expect(dialog).to_be_hidden()

            # New traffic appears without a reload once the refresh interval passes.
            requests_before = int(page.locator("#totals dd").first.get_attribute("title"))
            assert chat(alice.key, model="gemini-2.5-pro").status_code == 200
            with page.expect_response(lambda r: "/stat/data.json" in r.url and r.ok):
                page.clock.run_for(6000)
            expect(page.locator("#totals dd").first).to_have_attribute(
                "title", str(requests_before + 1)
            )
            assert "bob" not in page.content()
            assert external == []  # no CDN, nothing fetched from anywhere else
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000


def test_chromium_reads_the_landing_page_and_follows_it_to_the_stat_sign_in(live, alice):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            external = []
            page.on(
                "request",
                lambda request: (
                    external.append(request.url) if not request.url.startswith(live) else None
                ),
            )
            page.goto(f"{live}/")
            expect(page.locator("h1")).to_have_text("Rotator")
            expect(page.locator("#client-openai .base")).to_have_text(f"{live}/v1")
            expect(page.locator("#client-gemini .base")).to_have_text(live)
            expect(page.locator("#client-codex .base")).to_have_text(f"{live}/v1")
            expect(page.locator("#client-codex pre")).to_contain_text('wire_api = "responses"')
            expect(page.locator("#client-claude pre")).to_contain_text(f"ANTHROPIC_BASE_URL={live}")
            expect(page.locator("#go-admin a")).to_have_attribute("href", "/admin/")
            expect(page.locator("#go-docs a")).to_have_attribute("href", "/api/docs/")
            LANDING_SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(LANDING_SCREENSHOT), full_page=True)

            page.click("#go-stat a")
            page.fill("#key", alice.key)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{live}/stat")
            expect(page.locator("#key")).to_have_count(0)  # signed in: the pool page
            expect(page.locator("body")).to_contain_text("alice")
            assert external == []  # no CDN, nothing fetched from anywhere else
        finally:
            browser.close()
    assert LANDING_SCREENSHOT.stat().st_size > 10_000


QUOTA_SCREENSHOT = Path(django_settings.BASE_DIR) / "docs" / "stat-quota.png"
ALERTS_SCREENSHOT = Path(django_settings.BASE_DIR) / "docs" / "stat-alerts.png"


def _alerts_seed(persona) -> None:
    """Three deliveries as rotator.alerts records them: delivered, retried, failed."""
    from rotator.models import AlertDelivery

    now = clock.now()
    invalid = persona.credentials[2]
    rows = [
        (AlertDelivery.Event.CREDENTIAL_INVALID, invalid, "", invalid.last_error, "sent", 1, ""),
        (
            AlertDelivery.Event.POOL_EMPTY,
            None,
            "gemini-2.5-flash",
            "Every credential is rate-limited or exhausted until 08:00 UTC.",
            "sent",
            3,
            "",
        ),
        (
            AlertDelivery.Event.CREDENTIAL_SUSPENDED,
            persona.credentials[1],
            "",
            "This account has been disabled for violating the Terms of Service.",
            "failed",
            6,
            "receiver answered 502",
        ),
    ]
    for minutes, (event, credential, model, message, outcome, attempts, error) in enumerate(rows):
        AlertDelivery.objects.create(
            event=event,
            dedupe_key=f"screenshot:{minutes}",
            user=persona.user,
            credential=credential,
            model=model,
            payload={
                "event": event,
                "credential": (
                    {"id": credential.id, "name": credential.display_name} if credential else None
                ),
                "model": model,
                "message": message,
            },
            outcome=outcome,
            attempts=attempts,
            error=error,
            created_at=now - timedelta(minutes=50 - minutes * 20),
        )


def test_chromium_shows_quota_bars_per_project_and_the_alert_history(live, alice, fake_gemini):
    from rotator.models import QuotaReading
    from rotator.tasks import quotas_fetch_task
    from tests.rotator.test_oauth import oauth_persona

    _seed(alice)
    Credential.objects.filter(id=alice.credentials[2].id).update(
        last_error="API key not valid. Please pass a valid API key."
    )
    alice.credentials[2].refresh_from_db()
    _alerts_seed(alice)
    # An OAuth account in the same pool, whose quota Code Assist reports.
    olga = oauth_persona("olga", fake_gemini, project_id="olga-project")
    account = olga.credentials[0]
    Credential.objects.filter(id=account.id).update(
        user=alice.user, oauth_project_id="olga-project", project_label="olga-project"
    )
    fake_gemini.oauth_account(
        json.loads(account.secret())["refresh_token"]
    ).requests_by_model.update({"gemini-2.5-pro": 62, "gemini-2.5-flash": 930})
    assert quotas_fetch_task() == "read the quota of 1 OAuth account(s), 0 failed"
    # Limits Google stated in 429s for two API keys of different projects.
    for credential, limit in zip(alice.credentials[:2], (250, 1000), strict=True):
        QuotaReading.objects.limit_remember(
            credential_id=credential.id, model="gemini-2.5-flash", limit=limit, now=clock.now()
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1100})
            page.goto(f"{live}/stat")
            page.fill("#key", alice.key)
            page.click("button[type=submit]")
            quota = page.locator("#quota")
            expect(quota.locator(".quota-project")).to_have_count(3)
            oauth_pro = quota.locator(
                f'[data-credential="{account.id}"] .quota-row[data-model="gemini-2.5-pro"]'
            )
            expect(oauth_pro).to_contain_text("38% left")
            expect(oauth_pro).to_contain_text("resets")
            expect(quota.locator(".quota-row.estimate")).to_have_count(2)
            expect(quota.locator(".quota-row.estimate .tag").first).to_have_text("estimate")
            quota.scroll_into_view_if_needed()
            QUOTA_SCREENSHOT.parent.mkdir(exist_ok=True)
            quota.screenshot(path=str(QUOTA_SCREENSHOT))
            history = page.locator("#alerts")
            expect(history.locator("tr.alert-pool_empty")).to_contain_text("after 3 tries")
            expect(history.locator("td.outcome-failed")).to_contain_text("receiver answered 502")
            history.screenshot(path=str(ALERTS_SCREENSHOT))
        finally:
            browser.close()
    assert QUOTA_SCREENSHOT.stat().st_size > 10_000
    assert ALERTS_SCREENSHOT.stat().st_size > 5_000
