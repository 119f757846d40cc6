"""The report button of the Overview and History pages: the CLI's self-contained HTML report
(`vitdash.report.generate`), made as a job of the server's queue (place in line, progress, Cancel, stopped with the
session), then offered for download."""
from __future__ import annotations

import streamlit as st

from ui.jobs import run_job
from ui.state import PERFORM_RESULT_KEY
from vitdash.history import AuditHistory
from vitdash.load.checkpoint import Checkpoint
from vitdash.perform.evaluate import EvalResult
from vitdash.report import generate, report_bytes

REPORT_KEY = "report_html"  # (sha256, page, html) of the last report made in this session


def report_button(ckpt: Checkpoint, history: AuditHistory | None = None, key: str = "report") -> None:
    """'Make an HTML report' (with the accuracy this session measured for this very file, and the earlier audits
    when `history` is given), then its download button."""
    sha, result = st.session_state.get(PERFORM_RESULT_KEY, (None, None))
    accuracy = result if sha == ckpt.sha256 and isinstance(result, EvalResult) and not result.cancelled else None
    what = "the verdict with its evidence, the architecture, " + ("the accuracy measured in this session, "
                                                                  if accuracy is not None else "") + "attention maps"
    if st.button("Make an HTML report", key=key, icon=":material/description:",
                 help=f"One self-contained file that opens offline: {what}"
                      + (" and the earlier audits of this file" if history is not None else "") + "."):
        bar = st.progress(0.0, text="Starting the report...")
        rep = run_job("report", report_bytes(ckpt), lambda stop: generate(
            ckpt, history=history, accuracy=accuracy, progress=lambda p: bar.progress(p.fraction, text=p.message)),
            label=f"the report on {ckpt.name}")
        bar.empty()
        if rep is not None:
            st.session_state[REPORT_KEY] = (ckpt.sha256, key, rep.to_html())
    made = st.session_state.get(REPORT_KEY)
    if made is not None and made[:2] == (ckpt.sha256, key):
        st.download_button("Download report (HTML)", made[2], file_name=f"{ckpt.name or 'checkpoint'}.vitdash.html",
                           mime="text/html", key=f"{key}_html", on_click="ignore")
