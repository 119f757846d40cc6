"""End to end in a real headless browser: the server as users start it, the demo checkpoint picked in the
sidebar, every page of the navigation visited, and the HTML report opened with the network cut.

Debian's chromium (/usr/bin/chromium, which `scripts/test.sh` installs) is driven by Playwright; screenshots
go to artifacts/screenshots/ for people to look at. Skips, with the reason, only where no browser exists.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.demo_utils import demo_cache_dir

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CHROMIUM = Path(os.environ.get("VITDASH_CHROMIUM", "/usr/bin/chromium"))
SHOTS = ROOT / "artifacts" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
# What each page must show for the demo checkpoint (pages not listed are checked for a title and no exception).
KEY_TEXT = {
    "Home": "Does it perform?",
    "Overview": "Mapping report",
    "Audit history": "Run the audit and save it",
}


def _browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -r requirements-dev.txt)")
    if not CHROMIUM.exists():
        pytest.skip(f"no browser at {CHROMIUM}: install Debian's chromium (apt-get install chromium) or set "
                    "VITDASH_CHROMIUM to a Chromium executable")
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(demo_pair, request, tmp_path_factory):
    """`streamlit run app.py` on a free port, with the prebuilt demo cache and a private history and library."""
    _browser_or_skip()
    tmp = tmp_path_factory.mktemp("server")
    port = _free_port()
    models = SHARED / "checkpoints" if (SHARED / "checkpoints").is_dir() else tmp / "models"  # the real files
    env = dict(os.environ, VITDASH_CACHE_DIR=str(demo_cache_dir(request.config)),
               VITDASH_HISTORY_DB=str(tmp / "history.sqlite"), VITDASH_LIBRARY_DIR=str(tmp / "library"),
               VITDASH_MODEL_DIRS=str(models), HF_HUB_CACHE=str(tmp / "hf"), TORCH_HOME=str(tmp / "torch"),
               HF_HUB_OFFLINE="1")
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("streamlit did not come up:\n" + (tmp / "server.log").read_text()[-3000:])
        time.sleep(0.5)
    yield url, tmp / "server.log"
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    sync_playwright = _browser_or_skip()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def _settle(page, timeout_s: float = 240) -> None:
    """Wait for the script run the last action started to finish (Streamlit marks the app root)."""
    app = page.locator('[data-testid="stApp"]')
    try:
        app.and_(page.locator('[data-test-script-state="running"]')).wait_for(timeout=1500)
    except Exception:  # noqa: BLE001 - a fast run may already be over
        pass
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=timeout_s * 1000)


def _shot(page, name: str) -> Path:
    """The whole page: Streamlit scrolls inside its main container, so the viewport is stretched to fit it."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    size = page.viewport_size
    height = page.evaluate("Math.max(...Array.from(document.querySelectorAll('[data-testid=stMain], "
                           "[data-testid=stMainBlockContainer]'), e => e.scrollHeight), document.body.scrollHeight)")
    page.set_viewport_size({"width": size["width"], "height": min(max(height + 40, size["height"]), 8000)})
    page.wait_for_timeout(300)  # let charts re-layout to the new size
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _no_exception(page, where: str, log: Path) -> None:
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, f"{where}: exception shown: {boxes.first.inner_text()[:800]}\n" \
                               f"server log:\n{log.read_text()[-2000:]}"


def _pick(page, name: str) -> None:
    """Open a library entry by its name (labels lead with it) from the sidebar."""
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Library", exact=True).click()
    _settle(page)
    box = sidebar.locator('[data-testid="stSelectbox"]').first
    box.click()
    page.get_by_role("option", name=re.compile("^" + re.escape(name) + r" \(")).first.click()
    _settle(page)
    sidebar.locator('button[data-testid^="stBaseButton"]', has_text=re.compile(r"^Open$")).click()
    _settle(page)
    sidebar.get_by_text(name).last.wait_for(timeout=60_000)


def _pick_demo(page) -> None:
    _pick(page, "digits-vit-trained")


def _nav_titles(page) -> list[str]:
    return [t.strip().splitlines()[-1].strip()  # after the icon's name
            for t in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts() if t.strip()]


def test_a_fresh_session_shows_page_titles_not_file_names_and_opens_answered(server, browser):
    """The navigation never lists the app_pages/ files' raw names, from the first paint on; the first screen is the
    demo's trained model with the four questions answered."""
    url, _ = server
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url, wait_until="commit")
    seen = set()
    for _ in range(30):  # the first seconds, as a first visitor sees them
        seen.update(_nav_titles(page))
        page.wait_for_timeout(100)
    page.locator('[data-testid="stSidebarNav"] a').first.wait_for(timeout=60_000)
    main = page.locator('[data-testid="stMain"]')
    main.get_by_text("Where does it look?").first.wait_for(timeout=120_000)
    _settle(page)
    seen.update(_nav_titles(page))
    assert "Home" in seen and not seen & {"app", "home", "overview", "trained", "identity", "perform", "attention"}
    assert "TRAINED" in main.inner_text()
    _shot(page, "00-first-screen")
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
    _settle(page)
    _pick(page, CHECKPOINTS[which])
    _no_exception(page, f"after picking {which}", log)
    titles = _nav_titles(page)
    assert titles[:2] == ["Home", "Overview"] and "Audit history" in titles, titles
    links = page.locator('[data-testid="stSidebarNav"] a')
    for i, title in enumerate(titles, start=1):
        links.nth(i - 1).click()
        _settle(page)
        main = page.locator('[data-testid="stMain"]')
        main.locator("h1").first.wait_for(timeout=120_000)
        if title in KEY_TEXT:
            main.get_by_text(KEY_TEXT[title]).first.wait_for(timeout=120_000)
        _settle(page)
        _shot(page, f"{which}-{i:02d}-{_slug(title)}")
        _no_exception(page, f"{which}: {title}", log)
        assert "Pick a checkpoint" not in main.inner_text(), f"{title}: the checkpoint was lost between pages"
    page.close()


def _demo_page(browser, url: str, link: str):
    """A fresh browser page with the demo picked and the page whose sidebar link ends with `link` open;
    returns the page and its main area."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url, wait_until="domcontentloaded")
    page.locator('[data-testid="stSidebar"]').wait_for(timeout=60_000)
    _settle(page)
    _pick_demo(page)
    page.locator('[data-testid="stSidebarNav"] a', has_text=re.compile(re.escape(link) + "$")).click()
    _settle(page)
    return page, page.locator('[data-testid="stMain"]')


def test_history_records_an_audit_of_the_demo(server, browser):
    url, log = server
    page, main = _demo_page(browser, url, "Audit history")
    main.get_by_role("textbox", name="Reviewer").fill("browser test")
    main.get_by_role("textbox", name="Note").fill("end-to-end run")
    main.get_by_role("button", name="Run the audit and save it").click()
    _settle(page)
    main.get_by_text("Saved audit #").wait_for(timeout=120_000)
    _settle(page)
    _shot(page, "90-history-recorded")
    _no_exception(page, "recording an audit", log)
    assert "browser test" in main.inner_text()
    page.close()


def test_accuracy_check_runs_in_the_browser(server, browser):
    """The demo on its digits, from the Run button to the charts (the chance line is in the legend)."""
    url, log = server
    page, main = _demo_page(browser, url, "Does it perform?")
    main.get_by_role("button", name="Run", exact=True).click()
    _settle(page)
    main.get_by_text("chance top-1").first.wait_for(timeout=120_000)
    _settle(page)
    _shot(page, "91-accuracy-check")
    _no_exception(page, "running the accuracy check", log)
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
    _shot(page, "95-report-offline")
    context.close()
