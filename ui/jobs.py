"""Heavy work started from a page goes through the server's one job queue (`vitdash.jobs`).

The page shows the job's place in line while it waits and a Cancel button throughout. The job belongs to the
browser session: a new job from the same session replaces the old one, and the work's `should_stop` (which
the page hands to the library, which polls it between batches and between blocks) also touches the page
about twice a second. Touching the page is where Streamlit stops the script of a closed tab, of a rerun with
other inputs, or of a Cancel click, so the job ends within seconds and its slot and memory go back.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from vitdash.cache import shared_cache
from vitdash.jobs import Job, JobCancelled, JobQueue, JobRefused, shared_queue

T = TypeVar("T")
HEARTBEAT_S = 0.5


def queue() -> JobQueue:
    """This server's queue; when nothing runs and a job does not fit, cached models make room."""
    return shared_queue(make_room=shared_cache().shrink)


def session_id() -> str:
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else ""


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _cancelled() -> None:
    st.toast("Cancelled: the job was stopped and its memory handed back.", icon=":material/cancel:")


def run_job(kind: str, estimate: int, work: Callable[[Callable[[], bool]], T], label: str = "") -> T | None:
    """`work(should_stop)` once the queue admits it, or None when the queue refused or cancelled it (the page
    then shows why). A job stopped while running returns whatever `work` makes of that (a partial result)."""
    box = st.empty()
    with box.container():
        status = st.empty()
        st.button("Cancel", key=f"job_cancel_{kind}", on_click=_cancelled)
    q = queue()

    def waiting(job: Job, place: int) -> None:
        stats = q.stats()
        status.info(f"Waiting for the server: {_ordinal(place)} in line for {label or kind} "
                    f"({stats.running} of {stats.max_running} job slots busy, "
                    f"{stats.reserved / 2**20:,.0f} MB of {stats.budget / 2**20:,.0f} MB reserved).",
                    icon=":material/hourglass_top:")

    try:
        with q.slot(kind, estimate, owner=session_id(), label=label, on_wait=waiting) as job:
            started, last = time.monotonic(), [0.0]

            def should_stop() -> bool:
                now = time.monotonic()
                if now - last[0] >= HEARTBEAT_S:
                    last[0] = now
                    status.caption(f"Running {label or kind}: {now - started:.0f} s")  # Streamlit stops here
                return job.should_stop()

            result = work(should_stop)
        if job.cancelled:
            st.warning(f"Stopped: {job.reason}.")
        return result
    except (JobRefused, JobCancelled) as e:
        (st.error if isinstance(e, JobRefused) else st.warning)(str(e))
        return None
    finally:
        box.empty()
