"""Running pages under `streamlit.testing.v1.AppTest` with a checkpoint already chosen."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def page_test(page: str, source: str | None = None, timeout: float = 60) -> AppTest:
    """AppTest for app_pages/<page> with session_state['source'] set (a path, 'timm:<name>', ...); not yet run."""
    at = AppTest.from_file(str(ROOT / "app_pages" / page), default_timeout=timeout)
    if source is not None:
        at.session_state["source"] = source
    return at


def errors(at: AppTest) -> list[str]:
    """Messages of st.error and uncaught exceptions: a page test asserts this is empty (or what it expects)."""
    return [e.value for e in at.error] + [str(e.value) for e in at.exception]


def _picker_script():
    """The sidebar picker followed by the Overview page body, as one script.

    (AppTest drops sidebar widgets rendered by the st.navigation entry script on reruns, so the picker is
    exercised through this script, and app.py itself through a first-run test.)
    """
    import runpy

    from tests.apptest_utils import ROOT
    from ui.sidebar import checkpoint_picker

    checkpoint_picker()
    runpy.run_path(str(ROOT / "app_pages" / "overview.py"))


def picker_test(timeout: float = 120) -> AppTest:
    return AppTest.from_function(_picker_script, default_timeout=timeout)
