"""End to end in a real headless browser: the server as users start it, the demo checkpoint picked in the
sidebar, every page of the navigation visited, and the HTML report opened with the network cut.

Debian's chromium (/usr/bin/chromium, which `scripts/test.sh` installs) is driven by Playwright; screenshots
go to artifacts/screenshots/ for people to look at. Skips, with the reason, only where no browser exists.
"""
from __future__ import annotations

import os
import re

import pytest

from tests.browser_utils import (
    ARGS,
    CHROMIUM,
    ROOT,
    browser_or_skip,
    free_port,
    nav_titles,
    no_exception,
    pick,
    pick_demo,
    settle,
    shot,
    slug,
    streamlit_server,
)
from tests.demo_utils import demo_cache_dir

SHARED = ROOT.parent / "shared"
# What each page must show for the demo checkpoint (pages not listed are checked for a title and no exception).
KEY_TEXT = {
    "Home": "Does it perform?",
    "Overview": "Mapping report",
    "Audit history": "Run the audit and save it",
}


@pytest.fixture(scope="module")
def server(demo_pair, request, tmp_path_factory):
    """`streamlit run app.py` on a free port, with the prebuilt demo cache and a private history and library."""
    browser_or_skip()
    tmp = tmp_path_factory.mktemp("server")
    port = free_port()
    models = SHARED / "checkpoints" if (SHARED / "checkpoints").is_dir() else tmp / "models"  # the real files
    env = dict(os.environ, VITDASH_CACHE_DIR=str(demo_cache_dir(request.config)),
               VITDASH_HISTORY_DB=str(tmp / "history.sqlite"), VITDASH_LIBRARY_DIR=str(tmp / "library"),
               VITDASH_MODEL_DIRS=str(models), HF_HUB_CACHE=str(tmp / "hf"), TORCH_HOME=str(tmp / "torch"),
               HF_HUB_OFFLINE="1")
    with streamlit_server(port, env, tmp / "server.log"):
        yield f"http://127.0.0.1:{port}", tmp / "server.log"


@pytest.fixture(scope="module")
def browser():
    sync_playwright = browser_or_skip()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def test_a_fresh_session_shows_page_titles_not_file_names_and_opens_answered(server, browser):
    """The navigation never lists the app_pages/ files' raw names, from the first paint on; the first screen is the
    demo's trained model with the four questions answered."""
    url, _ = server
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url, wait_until="commit")
    seen = set()
    for _ in range(30):  # the first seconds, as a first visitor sees them
        seen.update(nav_titles(page))
        page.wait_for_timeout(100)
    page.locator('[data-testid="stSidebarNav"] a').first.wait_for(timeout=60_000)
    main = page.locator('[data-testid="stMain"]')
    main.get_by_text("Where does it look?").first.wait_for(timeout=120_000)
    settle(page)
    seen.update(nav_titles(page))
    assert "Home" in seen and not seen & {"app", "home", "overview", "trained", "identity", "perform", "attention"}
    assert "TRAINED" in main.inner_text()
    shot(page, "00-first-screen")
    page.close()


CHECKPOINTS = {  # what each page is visited with: the demo, a real backbone, and a custom-layout file
    "demo": "digits-vit-trained", "dinov2": "dinov2-small-hf", "custom": "fmnist_vit_custom.pth"}


@pytest.mark.parametrize("which", list(CHECKPOINTS))
def test_every_page(server, browser, which):
    """Every page of the navigation on one checkpoint, a screenshot of each (artifacts/screenshots/)."""
    if which != "demo" and not (SHARED / "checkpoints").is_dir():
        pytest.skip(f"the shared checkpoints are not at {SHARED} (a fresh clone has no ../shared)")
    url, log = server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url, wait_until="domcontentloaded")
    page.locator('[data-testid="stSidebar"]').wait_for(timeout=60_000)
    settle(page)
    pick(page, CHECKPOINTS[which])
    no_exception(page, f"after picking {which}", log)
    titles = nav_titles(page)
    assert titles[:2] == ["Home", "Overview"] and "Audit history" in titles, titles
    links = page.locator('[data-testid="stSidebarNav"] a')
    for i, title in enumerate(titles, start=1):
        links.nth(i - 1).click()
        settle(page)
        main = page.locator('[data-testid="stMain"]')
        main.locator("h1").first.wait_for(timeout=120_000)
        if title in KEY_TEXT:
            main.get_by_text(KEY_TEXT[title]).first.wait_for(timeout=120_000)
        settle(page)
        shot(page, f"{which}-{i:02d}-{slug(title)}")
        no_exception(page, f"{which}: {title}", log)
        assert "Pick a checkpoint" not in main.inner_text(), f"{title}: the checkpoint was lost between pages"
    page.close()


def _demo_page(browser, url: str, link: str):
    """A fresh browser page with the demo picked and the page whose sidebar link ends with `link` open;
    returns the page and its main area."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url, wait_until="domcontentloaded")
    page.locator('[data-testid="stSidebar"]').wait_for(timeout=60_000)
    settle(page)
    pick_demo(page)
    page.locator('[data-testid="stSidebarNav"] a', has_text=re.compile(re.escape(link) + "$")).click()
    settle(page)
    return page, page.locator('[data-testid="stMain"]')


def test_history_records_an_audit_of_the_demo(server, browser):
    url, log = server
    page, main = _demo_page(browser, url, "Audit history")
    main.get_by_role("textbox", name="Reviewer").fill("browser test")
    main.get_by_role("textbox", name="Note").fill("end-to-end run")
    main.get_by_role("button", name="Run the audit and save it").click()
    settle(page)
    main.get_by_text("Saved audit #").wait_for(timeout=120_000)
    settle(page)
    shot(page, "90-history-recorded")
    no_exception(page, "recording an audit", log)
    assert "browser test" in main.inner_text()
    page.close()


def test_accuracy_check_runs_in_the_browser(server, browser):
    """The demo on its digits, from the Run button to the charts (the chance line is in the legend)."""
    url, log = server
    page, main = _demo_page(browser, url, "Does it perform?")
    main.get_by_role("button", name="Run", exact=True).click()
    settle(page)
    main.get_by_text("chance top-1").first.wait_for(timeout=120_000)
    settle(page)
    shot(page, "91-accuracy-check")
    no_exception(page, "running the accuracy check", log)
    assert "Top-1" in main.inner_text()
    page.close()


def test_report_opens_offline(browser, demo_pair, tmp_path):
    from vitdash.load.sources import load
    from vitdash.report import generate

    rep = generate(load(demo_pair.trained), data="digits", limit=100, attention_images=1)
    html_path, _ = rep.write(tmp_path / "report.html")
    context = browser.new_context(offline=True, viewport={"width": 1300, "height": 900})
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    page = context.new_page()
    page.goto(html_path.as_uri())
    n_figures = sum(len(s.figures) for s in rep.sections)
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {n_figures}",
                           timeout=60_000)
    assert page.evaluate("document.querySelectorAll('img').length") == 1
    assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    shot(page, "95-report-offline")
    context.close()
