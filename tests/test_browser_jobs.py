"""Jobs belong to their browser session, end to end: one `streamlit run app.py` with a single job slot, two
colleagues in two browser contexts.

A long accuracy check (ViT-S/16 at init on all 1,797 digits at 224 px: minutes on a CPU) holds the slot. The second
colleague's short check on the demo waits, shows its place in line, and can be cancelled from there. When the
first colleague closes the tab, the long job stops within seconds and the waiting one runs.
"""
from __future__ import annotations

import os
import re
import time

import pytest

from tests.browser_utils import (
    ARGS,
    CHROMIUM,
    browser_or_skip,
    free_port,
    pick,
    pick_demo,
    settle,
    shot,
    streamlit_server,
)
from tests.demo_utils import demo_cache_dir


@pytest.fixture(scope="module")
def app(demo_pair, request, tmp_path_factory):
    browser_or_skip()
    tmp = tmp_path_factory.mktemp("jobs")
    port = free_port()
    env = dict(os.environ, VITDASH_CACHE_DIR=str(demo_cache_dir(request.config)), VITDASH_MAX_JOBS="1",
               VITDASH_HISTORY_DB=str(tmp / "history.sqlite"), VITDASH_LIBRARY_DIR=str(tmp / "library"),
               VITDASH_MODEL_DIRS=str(tmp / "models"), HF_HUB_CACHE=str(tmp / "hf"), TORCH_HOME=str(tmp / "torch"),
               HF_HUB_OFFLINE="1")
    with streamlit_server(port, env, tmp / "server.log"):
        yield f"http://127.0.0.1:{port}"


def _perform_page(browser, url: str, pick) -> tuple[object, object, object]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.get_by_test_id("stSidebar").wait_for(timeout=60_000)
    settle(page)
    pick(page)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Does it perform?").click()
    settle(page)
    return context, page, page.get_by_test_id("stMain")


def _vit_s(page) -> None:
    pick(page, "vit_small_patch16_224", source="timm architecture (init)")


def _start_long_job(browser, url: str):
    """ViT-S on every digit: it holds the only slot for minutes unless something stops it."""
    context, page, main = _perform_page(browser, url, _vit_s)
    main.get_by_role("textbox", name="Data").fill("digits")
    main.get_by_role("textbox", name="Data").press("Enter")
    settle(page)
    main.get_by_role("button", name="Run", exact=True).click()
    main.get_by_text(re.compile(r"images/s|Running")).first.wait_for(timeout=180_000)
    return context, page


def test_a_waiting_job_shows_its_place_can_cancel_and_runs_when_the_tab_holding_the_slot_closes(app):
    from playwright.sync_api import expect

    expect.set_options(timeout=120_000)
    with browser_or_skip()() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        long_context, long_page = _start_long_job(browser, app)

        # Waiting: place in line, then Cancel from the line.
        context, page, main = _perform_page(browser, app, pick_demo)
        main.get_by_role("button", name="Run", exact=True).click()
        expect(main.get_by_text(re.compile(r"Waiting for the server: 1st in line"))).to_be_visible()
        shot(page, "jobs-01-waiting")
        main.get_by_role("button", name="Cancel").click()
        expect(page.get_by_text("Cancelled: the job was stopped")).to_be_visible()
        settle(page)
        expect(main.get_by_text("chance top-1")).to_have_count(0)
        expect(main.get_by_text("in line")).to_have_count(0)
        shot(page, "jobs-02-cancelled")
        expect(long_page.get_by_test_id("stMain").get_by_text("chance top-1")).to_have_count(0)  # still running

        # Waiting again; the colleague holding the slot closes the tab: the long job stops, this one runs.
        main.get_by_role("button", name="Run", exact=True).click()
        expect(main.get_by_text(re.compile(r"1st in line"))).to_be_visible()
        closed = time.monotonic()
        long_context.close()
        expect(main.get_by_text(re.compile(r"in line"))).to_have_count(0, timeout=30_000)
        freed_after = time.monotonic() - closed
        expect(main.get_by_text("chance top-1")).to_be_visible()
        settle(page)
        expect(main.locator(".js-plotly-plot .main-svg").first).to_be_visible()
        shot(page, "jobs-03-ran-after-the-other-tab-closed")
        assert freed_after < 30, f"the closed tab's job held the slot {freed_after:.0f} s"
        context.close()
        browser.close()
