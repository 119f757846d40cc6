"""What the browser tests share: Debian's chromium driven by Playwright, `streamlit run app.py` on a free port,
waiting for a script run to finish, screenshots, and picking the demo in the sidebar."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("VITDASH_CHROMIUM", "/usr/bin/chromium"))
SHOTS = ROOT / "artifacts" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -r requirements-dev.txt)")
    if not CHROMIUM.exists():
        pytest.skip(f"no browser at {CHROMIUM}: install Debian's chromium (apt-get install chromium) or set "
                    "VITDASH_CHROMIUM to a Chromium executable")
    return sync_playwright


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(port: int, env: dict[str, str], log_path: Path, args: Sequence[str] = ()) -> Iterator[None]:
    """`streamlit run app.py` on 127.0.0.1:`port` until the block ends; fails the test if it does not come up."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                                 "--server.port", str(port), "--server.address", "127.0.0.1",
                                 "--browser.gatherUsageStats", "false", *args], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("streamlit did not come up:\n" + log_path.read_text()[-3000:])
                time.sleep(0.5)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def settle(page, timeout_s: float = 240) -> None:
    """Wait for the script run the last action started to finish (Streamlit marks the app root)."""
    app = page.locator('[data-testid="stApp"]')
    try:
        app.and_(page.locator('[data-test-script-state="running"]')).wait_for(timeout=1500)
    except Exception:  # noqa: BLE001 - a fast run may already be over
        pass
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=timeout_s * 1000)


def shot(page, name: str) -> Path:
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


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def no_exception(page, where: str, log: Path) -> None:
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, f"{where}: exception shown: {boxes.first.inner_text()[:800]}\n" \
                               f"server log:\n{log.read_text()[-2000:]}"


def pick(page, name: str, source: str = "Library") -> None:
    """Open `name` from the sidebar's `source` list (a library entry's label leads with its name; a timm
    architecture's label is its name)."""
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text(source, exact=True).click()
    settle(page)
    box = sidebar.locator('[data-testid="stSelectbox"]').first
    box.click()
    page.get_by_role("option", name=re.compile("^" + re.escape(name) + r"( \(|$)")).first.click()
    settle(page)
    sidebar.locator('button[data-testid^="stBaseButton"]', has_text=re.compile(r"^Open$")).click()
    settle(page)
    sidebar.get_by_text(name).last.wait_for(timeout=60_000)


def pick_demo(page) -> None:
    pick(page, "digits-vit-trained")


def nav_titles(page) -> list[str]:
    return [t.strip().splitlines()[-1].strip()  # after the icon's name
            for t in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts() if t.strip()]
