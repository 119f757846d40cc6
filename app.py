"""vitdash: `streamlit run app.py`. Sign-in (when secrets.toml has [auth]), navigation, and the sidebar
checkpoint picker shared by every page: every page runs through here, so the gate covers them all."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui import access, sidebar

PAGES = [  # (file, title, icon); pages are listed only once their file exists
    ("home.py", "Home", ":material/home:"),
    ("overview.py", "Overview", ":material/info:"),
    ("trained.py", "Is it trained?", ":material/monitor_heart:"),
    ("identity.py", "What is it?", ":material/account_tree:"),
    ("perform.py", "Does it perform?", ":material/speed:"),
    ("attention.py", "Where does it look?", ":material/visibility:"),
    ("compare.py", "Compare", ":material/compare_arrows:"),
    ("lineage.py", "Where does it come from?", ":material/family_history:"),
    ("zoo.py", "Model zoo", ":material/grid_view:"),
    ("history.py", "Audit history", ":material/history:"),
]

st.set_page_config(page_title="vitdash", page_icon=":material/visibility:", layout="wide")
allowed = access.gate()
here = Path(__file__).parent / "app_pages"
# Registered on every run (so /<page> still resolves), listed only once the visitor may see the pages.
page = st.navigation([st.Page(f"app_pages/{f}", title=t, icon=i, default=f == "home.py")
                      for f, t, i in PAGES if (here / f).exists()], position="sidebar" if allowed else "hidden")
if allowed:
    sidebar.open_default()  # a new session starts on the demo's trained model, its four questions answered
    sidebar.checkpoint_picker()
    page.run()
