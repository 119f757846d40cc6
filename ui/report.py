"""The "Download report" button of the Overview and History pages: the CLI's self-contained HTML report
(`vitdash.report.generate`), built when the button is clicked."""
from __future__ import annotations

import streamlit as st

from ui.state import PERFORM_RESULT_KEY
from vitdash.history import AuditHistory
from vitdash.load.checkpoint import Checkpoint
from vitdash.perform.evaluate import EvalResult
from vitdash.report import generate


def report_button(ckpt: Checkpoint, history: AuditHistory | None = None, key: str = "report") -> None:
    """A download button whose HTML is made on click (a separate thread: the page stays usable), with the
    accuracy this session measured for this very file, and the earlier audits when `history` is given."""
    sha, result = st.session_state.get(PERFORM_RESULT_KEY, (None, None))
    accuracy = result if sha == ckpt.sha256 and isinstance(result, EvalResult) and not result.cancelled else None
    st.download_button(
        "Download report (HTML)", lambda: generate(ckpt, history=history, accuracy=accuracy).to_html(),
        file_name=f"{ckpt.name or 'checkpoint'}.vitdash-report.html", mime="text/html", key=key,
        icon=":material/description:",
        help="One self-contained file that opens offline: the verdict with its evidence, the architecture, "
             + ("the accuracy measured in this session, " if accuracy is not None else "")
             + "attention maps" + (" and the earlier audits of this file" if history is not None else "")
             + ". Built when you click (a few seconds).")
