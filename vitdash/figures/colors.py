"""Verdict colours, defined once for the figures, the HTML report and the pages: one verdict looks the same
everywhere. Pages write Streamlit's named colours (`:green[...]`), plotly and HTML the hex behind each name."""
from __future__ import annotations

HEX = {"green": "#2ca02c", "orange": "#ff7f0e", "red": "#d62728", "gray": "#9e9e9e"}
# Tensor verdicts (trained / init / unclear) and model verdicts (trained / partial / init).
VERDICT_COLORS = {"trained": "green", "partial": "orange", "init": "red", "unclear": "gray"}


def verdict_hex(verdict: str) -> str:
    return HEX[VERDICT_COLORS.get(verdict, "gray")]
