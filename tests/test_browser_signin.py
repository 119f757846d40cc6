"""Sign-in end to end: a real OpenID Connect provider started here, `streamlit run app.py` with `[auth]` in its
secrets, and headless Chromium going through the provider's own pages.

The provider is oidc-provider-mock (a Flask app on Authlib) served from a thread on 127.0.0.1; the app is
browsed as `localhost` (Streamlit keeps the OAuth state in a cookie for the host in redirect_uri, so the app must
be reached by that exact host; the provider on another host keeps the two sets of cookies apart). The first
request the server sees is for a page URL, which is where a `pages/` folder would have bypassed app.py.

Covers: signed out, every URL shows only Sign in; alice signs in, is named in the sidebar, audits the demo on
the History page, and the saved audit names her; sign-out goes through the provider's end-session page and
leaves no identity cookie; mallory, whom the provider accepts but the allow-list does not, is refused on every
page. Needs oidc-provider-mock, Authlib (streamlit[auth]), Playwright and Chromium; skips, saying which, without.
"""
from __future__ import annotations

import json
import os
import secrets
import threading
import urllib.request
from collections.abc import Iterator

import pytest

from tests.browser_utils import ARGS, CHROMIUM, browser_or_skip, free_port, pick_demo, settle, shot, streamlit_server
from tests.demo_utils import demo_cache_dir
from vitdash.history import AuditHistory

oidc_provider_mock = pytest.importorskip("oidc_provider_mock")
pytest.importorskip("authlib", reason="the streamlit[auth] extra (Authlib) is not installed")

ALLOWED = ["alice@example.com", "@example.org"]
ALICE = {"email": "alice@example.com", "email_verified": True, "name": "Alice Example"}
MALLORY = "mallory@evil.test"  # typed as `sub` on the provider's form; the mock then sets email = sub


def _http(method: str, url: str, body: object | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read()


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    """oidc-provider-mock on 127.0.0.1:<free port>; clients must register, nonces are required."""
    import werkzeug.serving

    wsgi = oidc_provider_mock.app(require_client_registration=True, require_nonce=True)
    server = werkzeug.serving.make_server("127.0.0.1", 0, wsgi, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def app(provider, demo_pair, request, tmp_path_factory) -> Iterator[tuple[str, object]]:
    """The dashboard with sign-in on, registered with the provider as an admin would in its console."""
    browser_or_skip()
    tmp = tmp_path_factory.mktemp("signin")
    port = free_port()
    base = f"http://localhost:{port}"
    status, body = _http("POST", f"{provider}/oauth2/clients", {
        "redirect_uris": [f"{base}/oauth2callback"], "token_endpoint_auth_method": "client_secret_basic"})
    assert status == 201, body
    client = json.loads(body)
    assert _http("PUT", f"{provider}/users/alice", ALICE)[0] == 204
    q = json.dumps  # a JSON string is a valid TOML basic string
    (tmp / "secrets.toml").write_text(
        "[auth]\n"
        f"redirect_uri = {q(base + '/oauth2callback')}\n"
        f"cookie_secret = {q(secrets.token_urlsafe(32))}\n"
        f"client_id = {q(client['client_id'])}\nclient_secret = {q(client['client_secret'])}\n"
        f"server_metadata_url = {q(provider + '/.well-known/openid-configuration')}\n"
        f"\n[vitdash]\nallowed_users = {q(ALLOWED)}\n")
    env = dict(os.environ, VITDASH_CACHE_DIR=str(demo_cache_dir(request.config)),
               VITDASH_HISTORY_DB=str(tmp / "history.sqlite"), VITDASH_LIBRARY_DIR=str(tmp / "library"),
               VITDASH_MODEL_DIRS=str(tmp / "models"), HF_HUB_CACHE=str(tmp / "hf"), TORCH_HOME=str(tmp / "torch"),
               HF_HUB_OFFLINE="1")
    with streamlit_server(port, env, tmp / "server.log", ["--secrets.files", str(tmp / "secrets.toml")]):
        yield base, AuditHistory(tmp / "history.sqlite")


def test_sign_in_audit_the_demo_sign_out_and_a_refusal(provider, app):
    from playwright.sync_api import expect

    base, history = app
    expect.set_options(timeout=60_000)
    with browser_or_skip()() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        sign_in = page.get_by_role("button", name="Sign in")
        sign_out = page.get_by_role("button", name="Sign out")
        sidebar = page.get_by_test_id("stSidebar")
        main = page.get_by_test_id("stMain")

        def authorize_as(sub: str) -> None:
            sign_in.click()
            page.wait_for_url(f"{provider}/oauth2/authorize?**")
            page.locator("input[name=sub]").fill(sub)
            page.get_by_role("button", name="Authorize").click()
            page.wait_for_url(f"{base}/**")
            settle(page)

        # 1. Signed out. The first request of this server is a page URL (a pages/ folder would bypass app.py).
        for url in (f"{base}/history", f"{base}/perform", base):
            page.goto(url)
            expect(sign_in).to_be_visible()
            expect(page.get_by_role("heading", name="Audit history")).to_have_count(0)
            expect(page.get_by_role("heading", name="Does it perform?")).to_have_count(0)
            expect(page.get_by_text("Pick a checkpoint")).to_have_count(0)
            expect(page.get_by_test_id("stSidebarNav")).to_have_count(0)
        shot(page, "signin-01-signed-out")

        # 2. Alice signs in on the provider's form, lands on Home with the demo answered, and is named in the sidebar.
        authorize_as("alice")
        expect(main.get_by_text("Where does it look?").first).to_be_visible(timeout=120_000)
        expect(sidebar.get_by_text("Alice Example")).to_be_visible()
        expect(sidebar.get_by_text("alice@example.com")).to_be_visible()
        shot(page, "signin-02-alice")

        # 3. She audits the demo and the history says it was her.
        pick_demo(page)
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Audit history").click()
        settle(page)
        main.get_by_role("textbox", name="Note").fill("signed-in audit")
        main.get_by_role("button", name="Run the audit and save it").click()
        settle(page)
        expect(main.get_by_text("Saved audit #")).to_be_visible(timeout=180_000)
        settle(page)
        shot(page, "signin-03-audit-recorded")
        assert "by alice@example.com" in main.inner_text(), main.inner_text()[:3000]
        [record] = history.list()
        assert (record.user, record.reviewer, record.note) == ("alice@example.com", "alice@example.com",
                                                                "signed-in audit")
        assert record.file_name.startswith("digits-vit-trained")

        # 4. Sign-out goes through the provider's end-session page and comes back signed out.
        sign_out.click()
        page.wait_for_url(f"{provider}/oauth2/end_session?**")
        page.get_by_role("button", name="End session").click()
        page.wait_for_url(f"{base}/**")
        expect(sign_in).to_be_visible()
        expect(page.get_by_text("Alice Example")).to_have_count(0)
        assert not [c for c in context.cookies(base) if c["name"].startswith("_streamlit_user")]
        shot(page, "signin-04-signed-out-again")

        # 5. A user the provider accepts but the allow-list does not: refused on every page.
        authorize_as(MALLORY)
        for url in (base, f"{base}/history"):
            page.goto(url)
            expect(page.get_by_text(f"Access denied: {MALLORY} is not on this dashboard's list")).to_be_visible()
            expect(page.get_by_text("Pick a checkpoint")).to_have_count(0)
            expect(page.get_by_text("All audits")).to_have_count(0)
            expect(sign_out).to_be_visible()
        shot(page, "signin-05-mallory-refused")
        assert len(history.list()) == 1
        context.close()
        browser.close()
