"""Audit history: record an audit of the current checkpoint (with a reviewer and a note), list, filter, export."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from ui.access import current_user
from ui.jobs import run_job
from ui.report import report_button
from ui.state import PERFORM_RESULT_KEY, or_stop, selected
from vitdash.errors import VitdashError
from vitdash.history import AuditHistory, off_domain, record_audit
from vitdash.perform.evaluate import EvalResult
from vitdash.pipeline import pipeline_bytes, run_pipeline
from vitdash.trained import verdict


def _own_accuracy(ckpt):
    """The accuracy this session measured for this very file on the 'Does it perform?' page, if any."""

    found = st.session_state.get(PERFORM_RESULT_KEY)
    if found and found[0] == ckpt.sha256 and isinstance(found[1], EvalResult) and not found[1].cancelled:
        return found[1]
    return None


def _run_audit(ckpt, history: AuditHistory, reviewer: str, note: str, accuracy, data: str, confirmed: bool):
    bar = st.progress(0.0, text="Auditing the weights...")
    measure = bool(data) and accuracy is None
    found = run_job("accuracy" if measure else "audit", pipeline_bytes(ckpt, data if measure else None),
                    lambda stop: run_pipeline(ckpt, data or None, accuracy=accuracy, measure_throughput=False,
                                              progress=lambda p: bar.progress(
                                                  p.fraction, text=f"{p.stage.capitalize()}: {p.message}"),
                                              should_stop=stop), label=f"the audit of {ckpt.name}")
    bar.empty()
    if found is None:
        return None
    if "audit" in found.errors or "accuracy" in found.errors:  # nothing is saved without them
        raise VitdashError(found.errors.get("audit") or found.errors["accuracy"])
    if "architecture" in found.errors:
        st.warning(f"Architecture not recorded: {found.errors['architecture']}")
    kept = found.accuracy
    if kept is not None and off_domain(kept) and not confirmed:
        st.warning(f"Accuracy not saved: {off_domain(kept)} (tick the box to save it anyway, marked as such).")
        kept = None
    return record_audit(history, ckpt, audit=found.audit, family=found.architecture, accuracy=kept,
                        reviewer=reviewer, note=note, user=current_user(), off_domain_confirmed=confirmed)


def _earlier(ckpt, history: AuditHistory) -> None:
    earlier = history.find_by_hash(ckpt.sha256)
    if earlier:
        st.info(f"Audited {len(earlier)} time{'s' if len(earlier) > 1 else ''} before (same sha256). "
                f"Latest: {earlier[0].describe()}")
    else:
        st.caption(f"Not audited before: no record with sha256 {ckpt.sha256}.")


def _record_form(ckpt, history: AuditHistory) -> None:
    st.subheader(f"This checkpoint: {ckpt.name}")
    status = st.empty()  # filled after the form, so a save made in this run is already counted
    measured = _own_accuracy(ckpt)
    with st.form("record_audit"):
        left, right = st.columns(2)
        reviewer = left.text_input("Reviewer", key="history_reviewer", placeholder=current_user() or "your name")
        if measured is not None:
            right.caption(f"Accuracy measured on the 'Does it perform?' page: top-1 {measured.top1:.1%} on "
                          f"{measured.data.get('name')} ({measured.n_images} images).")
            if measured.off_domain:
                right.warning(measured.off_domain)
            data = ""
        else:
            data = right.text_input("Accuracy check data (optional)", key="history_data",
                                    placeholder="a folder of labeled images, or 'digits'")
        confirmed = right.checkbox("Save the accuracy even if the data is not the model's domain", value=False,
                                   key="history_off_domain", help="it is then saved marked as such")
        note = st.text_area("Note", key="history_note", placeholder="what you checked, where the file came from")
        submitted = st.form_submit_button("Run the audit and save it", type="primary")
    reviewer = reviewer.strip() or current_user()  # signed in: the identity says who, unless a name is typed
    if submitted and not reviewer:
        st.error("Type a reviewer name: every saved audit says who made it.")
    elif submitted:
        try:
            rec = _run_audit(ckpt, history, reviewer, note, measured, data.strip(), confirmed)
            if rec is not None:
                count = len(history.find_by_hash(ckpt.sha256))
                status.success(f"Saved audit #{rec.id} ({'the first' if count == 1 else f'{count} in all'} of this "
                               f"file): {rec.describe()}")
                return
        except VitdashError as e:
            st.error(str(e))
    with status.container():
        _earlier(ckpt, history)


st.title("Audit history")
history = or_stop(AuditHistory)

try:
    ckpt = selected()
except VitdashError as e:
    st.error(str(e))
    ckpt = None
if ckpt is not None:
    _record_form(ckpt, history)
    report_button(ckpt, history, key="history_report")
else:
    st.caption("Pick a checkpoint in the sidebar to audit it and save the result here.")

st.subheader("All audits")
st.caption(f"Kept in {history.path} (set VITDASH_HISTORY_DB to move it).")
c1, c2, c3, c4 = st.columns([3, 2, 2, 3])
text = c1.text_input("Search", key="history_search", placeholder="file name, sha256, family, note")
verdicts = c2.multiselect("Verdict", verdict.MODEL_VERDICTS, key="history_verdicts")
reviewer = c3.selectbox("Reviewed by", ["(anyone)", *history.reviewers()], key="history_filter_reviewer")
dates = c4.date_input("Between", value=(), key="history_dates", help="empty: all dates (UTC)")
since = until = None
if isinstance(dates, (list, tuple)) and dates:
    since, until = dates[0].isoformat(), (dates[1] if len(dates) > 1 else dates[0]).isoformat()
elif isinstance(dates, dt.date):
    since = until = dates.isoformat()

records = history.list(text=text.strip() or None, verdicts=verdicts or None,
                       reviewer=None if reviewer == "(anyone)" else reviewer, since=since, until=until)
if not records:
    st.info("No audit matches." if history.count() else "No audits saved yet.")
else:
    table = pd.DataFrame([{
        "when (UTC)": r.created_at.replace("T", " ").removesuffix("+00:00"), "file": r.file_name,
        "verdict": r.verdict, "confidence": r.confidence, "family": r.family, "match": r.family_kind, "top-1": r.top1,
        "data": r.accuracy_data, "reviewer": r.reviewer, "signed in as": r.user, "note": r.note,
        "size (MB)": r.size_bytes / 1e6,
        "sha256": r.sha256} for r in records])
    st.dataframe(table, hide_index=True, column_config={
        "confidence": st.column_config.NumberColumn(format="percent"),
        "top-1": st.column_config.NumberColumn(format="percent"),
        "size (MB)": st.column_config.NumberColumn(format="%.1f")})
    st.download_button(f"Download {len(records)} audit(s) as CSV", history.to_csv(records),
                       file_name="vitdash-audits.csv", mime="text/csv", key="history_csv")
