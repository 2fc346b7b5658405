"""The operator console in a real browser (issue 15): Playwright driving Debian's
chromium headless, with the client certificates of two operators, an auditor and
an RA. Run by tests/console_browser_e2e.rs, which starts the CA, issues the card
and checks afterwards with openssl and the audit log. Every step leaves a
screenshot in $ARTIFACTS. Exits non-zero (an AssertionError) on any failure.

Environment: CONSOLE (https://127.0.0.1:port), TLS_DIR (state/tls), CARD_ID,
LICENCE, ARTIFACTS, CHROMIUM (the browser binary).
"""

import os
import sys

from playwright.sync_api import sync_playwright

CONSOLE = os.environ["CONSOLE"]
TLS_DIR = os.environ["TLS_DIR"]
CARD_ID = os.environ["CARD_ID"]
LICENCE = os.environ["LICENCE"]
ARTIFACTS = os.environ["ARTIFACTS"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def context(browser, who):
    certs = []
    if who:
        certs = [{
            "origin": CONSOLE,
            "certPath": os.path.join(TLS_DIR, f"{who}.pem"),
            "keyPath": os.path.join(TLS_DIR, f"{who}.key"),
        }]
    # The server certificate is from the service-identity CA, which this
    # throw-away browser profile does not trust: the client certificate is the point here.
    return browser.new_context(client_certificates=certs, ignore_https_errors=True, locale="ja-JP")


def shot(page, name):
    page.screenshot(path=os.path.join(ARTIFACTS, f"{name}.png"), full_page=True)


def submit(page, selector):
    """Clicks a submit button; the HTTP status of the page it leads to."""
    with page.expect_navigation() as nav:
        page.click(selector)
    return nav.value.status


def main():
    os.makedirs(ARTIFACTS, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])

        # 1. op-sato logs in and finds the card by licence number, and by kana name.
        sato = context(browser, "op-sato").new_page()
        r = sato.goto(f"{CONSOLE}/?lang=ja")
        assert r.status == 200, r.status
        assert sato.text_content("#whoami") == "op-sato"
        sato.fill("#q", LICENCE)
        assert submit(sato, "form.search button") == 200
        assert sato.locator(f"a.card:text-is('{CARD_ID}')").count() == 1, sato.content()
        shot(sato, "01-find-by-licence")
        sato.fill("#q", "ヤマダ ハナコ")
        assert submit(sato, "form.search button") == 200
        assert sato.locator(f"a.card:text-is('{CARD_ID}')").count() == 1, sato.content()
        shot(sato, "01-find-by-kana")
        sato.click(f"a.card:text-is('{CARD_ID}')")
        assert sato.get_attribute("#card-state", "data-state") == "ACTIVE"
        # The fees, from issuance (the harness's holder is a member).
        assert sato.text_content("#fee-renewal") == "¥5,000", sato.content()
        assert sato.get_attribute("#fee-due", "data-yen") == "0"
        shot(sato, "01-card")

        # 8. A form with a missing confirmation method: rejected naming the field, nothing revoked.
        sato.fill("#confirmed_by", "op-sato")
        assert submit(sato, "#loss-report button") == 400
        assert sato.text_content("#error code.field") == "method", sato.content()
        assert sato.get_attribute("#card-state", "data-state") == "ACTIVE"
        shot(sato, "08-missing-method")

        # 2. op-sato files the loss report with two-person control on.
        sato.select_option("#method", "phone")
        sato.fill("#note", "電話で紛失の届出")
        assert submit(sato, "#loss-report button") == 202
        assert sato.get_attribute("#state", "data-state") == "AWAITING_APPROVAL"
        approval_id = sato.text_content("#approval-id")
        shot(sato, "02-awaiting-approval")

        # 3. op-sato's own approval is refused.
        sato.goto(f"{CONSOLE}/approvals")
        row = f"tr.approval[data-id='{approval_id}']"
        assert sato.locator(row).count() == 1, sato.content()
        assert submit(sato, f"{row} button") == 409
        assert "ご自身の申請は承認できません" in sato.content()
        shot(sato, "03-self-approval-refused")

        # 4. op-ito approves. 5. The page shows revoked, with the CRL number and OCSP live.
        ito = context(browser, "op-ito").new_page()
        ito.goto(f"{CONSOLE}/approvals")
        assert submit(ito, f"{row} button") == 200
        assert ito.get_attribute("#state", "data-state") == "DONE", ito.content()
        numbers = ito.text_content("#crl-numbers")
        assert numbers and all(n.strip().isdigit() for n in numbers.split(",")), numbers
        statuses = [s.strip() for s in ito.locator("td.ocsp-status").all_text_contents()]
        assert statuses == ["revoked", "revoked"], statuses
        shot(ito, "05-revoked")
        ito.goto(f"{CONSOLE}/cards/{CARD_ID}?lang=en")
        assert ito.get_attribute("#card-state", "data-state") == "REVOKED"
        shot(ito, "05-card-revoked-en")

        # The auditor logs in and sees the card revoked, without a loss-report form.
        kato = context(browser, "audit-kato").new_page()
        r = kato.goto(f"{CONSOLE}/cards/{CARD_ID}")
        assert r.status == 200, r.status
        assert kato.get_attribute("#card-state", "data-state") == "REVOKED"
        assert kato.locator("#loss-report").count() == 0
        shot(kato, "06-auditor")

        # 6. The auditor sees the entries under both operators' names, and the chain verifies.
        kato.goto(f"{CONSOLE}/audit")
        for person in ["op-sato", "op-ito"]:
            kato.fill("#actor", person)
            assert submit(kato, "form.filter button") == 200
            actors = set(s.strip() for s in kato.locator("td.actor").all_text_contents())
            assert actors == {person}, (person, actors)
            assert int(kato.get_attribute("#matched", "data-count")) > 0
            shot(kato, f"06-audit-{person}")
        assert submit(kato, "#verify") == 200
        assert kato.get_attribute("#verdict", "data-verdict") == "OK", kato.content()
        entries = int(kato.text_content("#verified-entries"))
        assert entries > 0, entries
        shot(kato, "06-audit-chain-verified")
        # An operator gets no audit view.
        r = sato.goto(f"{CONSOLE}/audit")
        assert r.status == 403, r.status
        assert sato.locator("table#audit").count() == 0

        # The operations view: every service SERVING, the CRLs with their nextUpdate.
        r = sato.goto(f"{CONSOLE}/operations")
        assert r.status == 200, r.status
        statuses = dict(zip(
            sato.locator("tr.service").evaluate_all("rows => rows.map(r => r.dataset.service)"),
            [s.strip() for s in sato.locator("td.health").all_text_contents()],
        ))
        assert statuses == {s: "SERVING" for s in ["registry", "issuance", "revocation", "crl"]}, statuses
        assert sato.locator("tr.crl").count() > 0, sato.content()
        assert all(sato.locator("td.next-update").all_text_contents()), sato.content()
        shot(sato, "09-operations")

        # 7. The RA certificate is refused, and so is no certificate.
        for who in ["ra-tokyo", None]:
            page = context(browser, who).new_page()
            r = page.goto(f"{CONSOLE}/")
            assert r.status == 403, (who, r.status)
            assert page.locator("#whoami").count() == 0
            shot(page, f"07-refused-{who or 'no-certificate'}")

        browser.close()
    print(f"console browser test: ok, screenshots in {ARTIFACTS}")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"console browser test failed: {e!r}", file=sys.stderr)
        raise
