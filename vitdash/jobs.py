"""One bounded queue per server process for the heavy work: accuracy checks, few-shot probes, zoo scans, full
audits of large files, reports.

The byte-bounded cache (`vitdash.cache`) bounds what is kept between runs; it cannot bound what a running job
allocates, and eight colleagues each starting a probe at once would need many times the machine. So each job
says up front roughly how much it will need (`estimate`: model size, batch, input size) and waits for a slot:
at most `max_running` at once, first come first served, and only while the process's resident size plus what
the running jobs have reserved leaves room for it under the budget ($VITDASH_MEMORY_MB, default half the
machine). A job that could never fit, even alone, is refused with the reason: at once, or, when the server's
idle size includes cached models that could be dropped, once nothing runs and dropping them did not make room.
So is one that finds the waiting line full. A watchdog samples the resident size while jobs run and stops the newest one if the
budget is neared anyway (an estimate that was too low: at 95% of it), so nothing runs past it.

A job belongs to an owner (a browser session): a new job from the same owner cancels the older one (the
page was rerun with other inputs), and the owner can be cancelled as a whole (the tab was closed). Work polls
`job.should_stop()` (the engine does, between batches and between blocks), so a cancelled job stops within
seconds; when it ends its memory is handed back to the system.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from vitdash.common.compute import cpu_count
from vitdash.common.memory import MB, give_back, memory_budget, process_rss
from vitdash.errors import VitdashError

WAITING, RUNNING, DONE, CANCELLED = "waiting", "running", "done", "cancelled"
KINDS = ("accuracy", "fewshot", "zoo", "audit", "report", "lineage")
# The watchdog stops the newest job here, not at the budget itself: a stop lands at the job's next check (about a
# second of work), and the job may still grow until then.
WATCH_FRACTION = 0.95
# A full audit takes well under a second below this (a ViT-S/16: 88 MB) and is not worth a place in line.
LARGE_AUDIT_BYTES = 256 << 20


class JobRefused(VitdashError):
    """The job was not queued: it cannot fit the budget, or the line is full. The message says which."""


class JobCancelled(VitdashError):
    """The job was cancelled before or while it ran; `reason` says by whom."""


@dataclass
class Job:
    id: int
    kind: str
    estimate: int  # bytes it may add to the process at its peak
    owner: str = ""
    label: str = ""
    state: str = WAITING
    reason: str = ""  # why it was cancelled
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    def cancel(self, reason: str = "cancelled") -> None:
        if self.state in (WAITING, RUNNING) and not self._stop.is_set():
            self.reason = reason
            self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    def should_stop(self) -> bool:
        """What long-running work polls: True once anyone cancelled this job."""
        return self._stop.is_set()

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


@dataclass
class QueueStats:
    budget: int
    max_running: int
    max_waiting: int
    rss: int
    peak_rss: int
    idle_rss: int  # resident size the last time no job ran: what the server holds without jobs
    reserved: int  # what the running jobs' estimates add up to
    running: int
    waiting: int
    completed: int
    cancelled: int
    refused: int
    stopped_for_memory: int

    def to_dict(self) -> dict:
        return asdict(self)


def max_running_from_env() -> int:
    """$VITDASH_MAX_JOBS, default one job per two cores (a forward pass already uses several threads)."""
    text = os.environ.get("VITDASH_MAX_JOBS", "").strip()
    if not text:
        return max(1, cpu_count() // 2)
    if not text.isdigit() or int(text) < 1:
        raise VitdashError(f"VITDASH_MAX_JOBS must be a whole number of at least 1, got {text!r}")
    return int(text)


def _mb(n: int) -> str:
    return f"{n / MB:,.0f} MB"


class JobQueue:
    """Admission control: `slot(...)` is the whole protocol (submit, wait in line, run, release)."""

    def __init__(self, budget: int, max_running: int = 1, max_waiting: int = 32,
                 rss: Callable[[], int] = process_rss, make_room: Callable[[int], int] | None = None,
                 release: Callable[[], None] = give_back, watch_interval: float = 0.2):
        if budget <= 0 or max_running < 1 or max_waiting < 0:
            raise VitdashError(f"a job queue needs a positive budget and at least one slot (got budget {budget}, "
                               f"max_running {max_running}, max_waiting {max_waiting})")
        self.budget, self.max_running, self.max_waiting = int(budget), int(max_running), int(max_waiting)
        self._rss, self._make_room, self._release, self._interval = rss, make_room, release, watch_interval
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._waiting: list[Job] = []
        self._running: list[Job] = []
        self._idle_rss = self._peak = rss()
        self._counts = {"completed": 0, "cancelled": 0, "refused": 0, "memory": 0}
        self._watcher: threading.Thread | None = None

    # ---- what the pages call ----------------------------------------------------------------------------

    @contextmanager
    def slot(self, kind: str, estimate: int, owner: str = "", label: str = "",
             on_wait: Callable[[Job, int], None] | None = None, poll: float = 0.5) -> Iterator[Job]:
        """Run the body as job `kind` once admitted. `on_wait(job, place)` is called about every `poll`
        seconds while it waits (place 1 = next); it may raise to give up (a page being rerun does).
        Raises JobRefused when it cannot be queued, JobCancelled when cancelled before it started."""
        job = self.submit(kind, estimate, owner, label)
        try:
            self.wait(job, on_wait, poll)
            yield job
        except BaseException as e:  # Streamlit stopping a closed tab's script, or the work failing: not completed
            job.cancel(f"it ended early ({type(e).__name__})")
            raise
        finally:
            self.finish(job)

    def submit(self, kind: str, estimate: int, owner: str = "", label: str = "") -> Job:
        if kind not in KINDS:
            raise VitdashError(f"unknown job kind {kind!r}: one of {', '.join(KINDS)}")
        job = Job(next(self._ids), kind, max(0, int(estimate)), owner, label)
        with self._cond:
            room = self.budget - self._idle_rss
            # With a cache to shrink, what the server holds idle is partly droppable: the line decides once
            # nothing runs and the cache has made room (`_admit`), rather than refusing on a size it could free.
            if job.estimate > room and self._make_room is None:
                self._counts["refused"] += 1
                raise JobRefused(
                    f"This {kind} job needs about {_mb(job.estimate)}, more than this server can give any one job: "
                    f"its memory budget is {_mb(self.budget)} (VITDASH_MEMORY_MB) and it holds {_mb(self._idle_rss)} "
                    f"without jobs, leaving {_mb(max(room, 0))}. Use a smaller batch, input size or image count, "
                    "or ask the dashboard's owner to raise VITDASH_MEMORY_MB.")
            if len(self._waiting) >= self.max_waiting:
                self._counts["refused"] += 1
                raise JobRefused(f"The server is busy: {len(self._waiting)} jobs are already waiting (the most it "
                                 "keeps in line). Try again in a few minutes.")
            if owner:  # one job per owner: a new one supersedes the one a rerun left behind
                for old in self._waiting + self._running:
                    if old.owner == owner:
                        old.cancel("replaced by a newer job from the same session")
            self._waiting.append(job)
            self._cond.notify_all()
        return job

    def wait(self, job: Job, on_wait: Callable[[Job, int], None] | None = None, poll: float = 0.5) -> None:
        """Block until `job` runs; raises JobCancelled if it is cancelled first."""
        while True:
            with self._cond:
                self._admit()
                if job.cancelled:
                    raise JobCancelled(job.reason)
                if job.state == RUNNING:
                    return
                place = self._waiting.index(job) + 1
            if on_wait is not None:
                on_wait(job, place)
            with self._cond:
                if job.state == WAITING and not job.cancelled:
                    self._cond.wait(poll)

    def finish(self, job: Job) -> None:
        """Take the job out of the line or its slot, hand its memory back, let the next one in."""
        with self._cond:
            if job.state not in (WAITING, RUNNING):
                return
            (self._waiting if job.state == WAITING else self._running).remove(job)
            was_running = job.state == RUNNING
            job.state = CANCELLED if job.cancelled else DONE
            self._counts["cancelled" if job.cancelled else "completed"] += 1
            idle = not self._running
        if was_running:
            self._release()
        with self._cond:
            if idle and not self._running:
                self._idle_rss = self._rss()
            self._admit()
            self._cond.notify_all()

    def cancel_owner(self, owner: str, reason: str = "the session ended") -> int:
        """Cancel every job of `owner`; returns how many."""
        with self._cond:
            jobs = [j for j in self._waiting + self._running if j.owner == owner]
            for j in jobs:
                j.cancel(reason)
            self._cond.notify_all()
        return len(jobs)

    def place(self, job: Job) -> int:
        """0 while it runs, n when it is n-th in line, -1 once it is over."""
        with self._cond:
            if job.state == RUNNING:
                return 0
            return self._waiting.index(job) + 1 if job in self._waiting else -1

    def stats(self) -> QueueStats:
        with self._cond:
            rss = self._rss()
            self._peak = max(self._peak, rss)
            return QueueStats(self.budget, self.max_running, self.max_waiting, rss, self._peak, self._idle_rss,
                              sum(j.estimate for j in self._running), len(self._running), len(self._waiting),
                              self._counts["completed"], self._counts["cancelled"], self._counts["refused"],
                              self._counts["memory"])

    # ---- inside the lock --------------------------------------------------------------------------------

    def _committed(self) -> int:
        """What the process may hold once the running jobs reach their estimates: the larger of what it holds
        now and its idle size plus their reservations (a job that has not allocated yet still will)."""
        rss = self._rss()
        self._peak = max(self._peak, rss)
        return max(rss, self._idle_rss + sum(j.estimate for j in self._running))

    def _admit(self) -> None:
        for gone in [j for j in self._waiting if j.cancelled]:  # cancelled while waiting: out of line now
            self._waiting.remove(gone)
            gone.state = CANCELLED
            self._counts["cancelled"] += 1
        while self._waiting and len(self._running) < self.max_running:
            head = self._waiting[0]
            needed = self._committed() + head.estimate - self.budget
            if needed > 0 and not self._running and self._make_room is not None:
                self._make_room(needed)  # nothing runs: drop cached models rather than keep the line stuck
                self._release()
                self._idle_rss = self._rss()
                needed = self._committed() + head.estimate - self.budget
            if needed > 0:
                if not self._running and head.estimate > self.budget - self._idle_rss:
                    head.cancel(f"This {head.kind} job needs about {_mb(head.estimate)} and the server, even idle, "
                                f"leaves only {_mb(max(self.budget - self._idle_rss, 0))} of its {_mb(self.budget)} "
                                "budget (VITDASH_MEMORY_MB)")
                    self._waiting.pop(0)
                    head.state = CANCELLED
                    self._counts["refused"] += 1
                    continue
                return  # first come, first served: the head waits for memory, the others wait behind it
            self._waiting.pop(0)
            head.state, head.started = RUNNING, time.monotonic()
            self._running.append(head)
            self._watch()

    def _watch(self) -> None:
        if self._watcher is None or not self._watcher.is_alive():
            self._watcher = threading.Thread(target=self._watchdog, name="vitdash-jobs-watchdog", daemon=True)
            self._watcher.start()

    def _watchdog(self) -> None:
        """While jobs run: if the process passes its budget, stop the newest running job (its estimate was too
        low); the older ones keep their memory and finish. One at a time: a stopped job gets to let go of its
        memory before anyone else is stopped."""
        while True:
            with self._cond:
                if not self._running:
                    return
                rss = self._rss()
                self._peak = max(self._peak, rss)
                live = [j for j in self._running if not j.cancelled]
                if rss > WATCH_FRACTION * self.budget and live and len(live) == len(self._running):
                    newest = max(live, key=lambda j: j.started or 0.0)
                    newest.cancel(f"the server reached its memory budget of {_mb(self.budget)} ({_mb(rss)} "
                                  "resident); try a smaller batch or input size")
                    self._counts["memory"] += 1
            time.sleep(self._interval)


_SHARED: JobQueue | None = None
_SHARED_LOCK = threading.Lock()


def shared_queue(make_room: Callable[[int], int] | None = None) -> JobQueue:
    """The process-wide queue every session submits to (budget and slots from the environment)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = JobQueue(memory_budget(), max_running_from_env(), make_room=make_room)
        return _SHARED
