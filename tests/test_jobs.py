"""The job queue: slots, the memory budget, first come first served, refusals with reasons, cancellation by
owner, the watchdog, and memory handed back. A fake resident size makes every case exact and fast."""
from __future__ import annotations

import threading
import time

import pytest

from vitdash import jobs
from vitdash.jobs import CANCELLED, DONE, JobCancelled, JobRefused

MB = 1 << 20


def JobQueue(*args, **kwargs) -> jobs.JobQueue:  # the queue, without the real gc + malloc_trim
    kwargs.setdefault("release", lambda: None)
    return jobs.JobQueue(*args, **kwargs)


class FakeMemory:
    """A process whose resident size is `base` plus what the running test jobs have `use`d."""

    def __init__(self, base: int = 100 * MB):
        self.base, self.used = base, 0
        self.lock = threading.Lock()

    def __call__(self) -> int:
        return self.base + self.used

    def use(self, n: int) -> None:
        with self.lock:
            self.used += n


def _run_in_thread(queue: JobQueue, log: list, name: str, estimate: int, hold: threading.Event, owner: str = "",
                   mem: FakeMemory | None = None, use: int = 0) -> threading.Thread:
    def body():
        try:
            with queue.slot("accuracy", estimate, owner=owner, poll=0.01) as job:
                log.append(("start", name))
                if mem is not None:
                    mem.use(use)
                while not hold.is_set() and not job.should_stop():
                    time.sleep(0.005)
                if mem is not None:
                    mem.use(-use)
                log.append(("stop" if job.should_stop() else "end", name, job.reason))
        except (JobCancelled, JobRefused) as e:
            log.append(("refused" if isinstance(e, JobRefused) else "cancelled", name, str(e)))

    t = threading.Thread(target=body)
    t.start()
    return t


def _until(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_at_most_max_running_at_once_and_first_come_first_served():
    mem = FakeMemory()
    q = JobQueue(budget=10_000 * MB, max_running=2, rss=mem)
    log, gates = [], {n: threading.Event() for n in "abcd"}
    threads = []
    for n in "abcd":
        threads.append(_run_in_thread(q, log, n, 10 * MB, gates[n]))
        _until(lambda: q.stats().running + q.stats().waiting == len(threads))
    assert [e[1] for e in log if e[0] == "start"] == ["a", "b"] and q.stats().waiting == 2
    gates["b"].set()
    _until(lambda: ("start", "c") in log)
    assert ("start", "d") not in log
    for g in gates.values():
        g.set()
    for t in threads:
        t.join()
    assert [e[1] for e in log if e[0] == "start"] == ["a", "b", "c", "d"]
    assert q.stats().completed == 4 and q.stats().running == q.stats().waiting == 0


def test_the_memory_budget_holds_a_job_back_until_another_ends():
    mem = FakeMemory(base=100 * MB)
    q = JobQueue(budget=1000 * MB, max_running=4, rss=mem)
    log, gate_a, gate_b = [], threading.Event(), threading.Event()
    a = _run_in_thread(q, log, "a", 600 * MB, gate_a, mem=mem, use=600 * MB)
    _until(lambda: ("start", "a") in log)
    b = _run_in_thread(q, log, "b", 400 * MB, gate_b, mem=mem, use=400 * MB)  # 100 + 600 + 400 > 1000
    _until(lambda: q.stats().waiting == 1)
    time.sleep(0.05)
    assert ("start", "b") not in log and q.place(q._waiting[0]) == 1
    gate_a.set()
    _until(lambda: ("start", "b") in log)
    gate_b.set()
    a.join(), b.join()
    assert q.stats().peak_rss <= 1000 * MB


def test_a_reservation_counts_before_the_job_allocates():
    """A job admitted a moment ago has not allocated yet: its estimate still holds the room."""
    mem = FakeMemory(base=100 * MB)
    q = JobQueue(budget=1000 * MB, max_running=4, rss=mem)
    log, gate = [], threading.Event()
    a = _run_in_thread(q, log, "a", 700 * MB, gate)  # allocates nothing (yet)
    _until(lambda: ("start", "a") in log)
    b = _run_in_thread(q, log, "b", 300 * MB, gate)
    _until(lambda: q.stats().waiting == 1)
    assert q.stats().reserved == 700 * MB and ("start", "b") not in log
    gate.set()
    a.join(), b.join()
    assert ("end", "b", "") in log


def test_a_job_that_can_never_fit_is_refused_with_the_reason():
    mem = FakeMemory(base=300 * MB)
    q = JobQueue(budget=1000 * MB, rss=mem)
    with pytest.raises(JobRefused) as e, q.slot("fewshot", 800 * MB):
        pytest.fail("must not run")
    message = str(e.value)
    assert "800 MB" in message and "1,000 MB" in message and "700 MB" in message and "VITDASH_MEMORY_MB" in message
    assert q.stats().refused == 1 and q.stats().running == 0


def test_a_full_line_refuses_instead_of_growing():
    q = JobQueue(budget=1000 * MB, max_running=1, max_waiting=1, rss=FakeMemory())
    log, gate = [], threading.Event()
    first = _run_in_thread(q, log, "a", MB, gate)
    _until(lambda: ("start", "a") in log)
    second = _run_in_thread(q, log, "b", MB, gate)
    _until(lambda: q.stats().waiting == 1)
    with pytest.raises(JobRefused, match="already waiting"):
        q.submit("zoo", MB)
    gate.set()
    first.join(), second.join()


def test_cache_is_shrunk_to_make_room_when_nothing_runs():
    mem = FakeMemory(base=900 * MB)
    dropped = []

    def make_room(n: int) -> int:
        dropped.append(n)
        mem.base -= 500 * MB
        return 500 * MB

    q = JobQueue(budget=1000 * MB, rss=mem, make_room=make_room)
    q._idle_rss = 100 * MB  # measured before the cache filled up
    with q.slot("accuracy", 300 * MB) as job:
        assert job.state == "running"
    assert dropped == [200 * MB]


def test_a_job_is_not_refused_for_memory_the_cache_can_give_back():
    """Sessions' cached models made the server's idle size large; the job waits for the cache to shrink instead
    of being told it can never fit."""
    mem = FakeMemory(base=900 * MB)

    def make_room(n: int) -> int:
        mem.base -= 600 * MB
        return 600 * MB

    q = JobQueue(budget=1000 * MB, rss=mem, make_room=make_room)  # idle size measured with the cache full: 900 MB
    with q.slot("accuracy", 300 * MB) as job:
        assert job.state == "running"
    assert q.stats().refused == 0


def test_a_newer_job_from_the_same_owner_cancels_the_older_one():
    q = JobQueue(budget=1000 * MB, max_running=2, rss=FakeMemory())
    log, gate = [], threading.Event()
    old = _run_in_thread(q, log, "old", MB, gate, owner="session-1")
    _until(lambda: ("start", "old") in log)
    other = _run_in_thread(q, log, "other", MB, gate, owner="session-2")
    _until(lambda: ("start", "other") in log)
    new = _run_in_thread(q, log, "new", MB, gate, owner="session-1")
    old.join(timeout=5)
    assert ("stop", "old", "replaced by a newer job from the same session") in log
    _until(lambda: ("start", "new") in log)
    assert not [e for e in log if e[1] == "other" and e[0] != "start"]  # another session's job is untouched
    gate.set()
    new.join(), other.join()


def test_cancelling_an_owner_stops_its_running_and_waiting_jobs_within_a_poll():
    q = JobQueue(budget=1000 * MB, max_running=1, rss=FakeMemory())
    log, gate = [], threading.Event()
    running = _run_in_thread(q, log, "a", MB, gate, owner="tab")
    _until(lambda: ("start", "a") in log)
    blocker_gate = threading.Event()
    waiting = _run_in_thread(q, log, "w", MB, blocker_gate, owner="other-tab")
    _until(lambda: q.stats().waiting == 1)
    assert q.cancel_owner("tab", "the tab was closed") == 1
    running.join(timeout=5)
    assert ("stop", "a", "the tab was closed") in log
    _until(lambda: ("start", "w") in log)
    assert q.cancel_owner("other-tab") == 1
    waiting.join(timeout=5)
    stats = q.stats()
    assert stats.cancelled == 2 and stats.running == stats.waiting == 0


def test_a_waiting_job_can_give_up_from_its_wait_callback():
    q = JobQueue(budget=1000 * MB, max_running=1, rss=FakeMemory())
    log, gate = [], threading.Event()
    holder = _run_in_thread(q, log, "a", MB, gate)
    _until(lambda: ("start", "a") in log)
    places = []

    def on_wait(job, place):
        places.append(place)
        if len(places) == 3:
            job.cancel("the user pressed Cancel")

    with pytest.raises(JobCancelled, match="pressed Cancel"), q.slot("report", MB, on_wait=on_wait, poll=0.01):
        pytest.fail("must not run")
    assert places == [1, 1, 1] and q.stats().waiting == 0
    gate.set()
    holder.join()


def test_the_watchdog_stops_the_newest_job_when_the_budget_is_passed():
    mem = FakeMemory(base=100 * MB)
    q = JobQueue(budget=1000 * MB, max_running=2, rss=mem, watch_interval=0.01)
    log, gate = [], threading.Event()
    old = _run_in_thread(q, log, "old", 100 * MB, gate, mem=mem, use=300 * MB)
    _until(lambda: ("start", "old") in log)
    new = _run_in_thread(q, log, "new", 100 * MB, gate, mem=mem, use=700 * MB)  # estimate far too low
    new.join(timeout=5)
    assert [e for e in log if e[1] == "new"][-1][0] == "stop"
    assert "memory budget of 1,000 MB" in [e for e in log if e[1] == "new"][-1][2]
    assert ("start", "old") in log and not [e for e in log if e[1] == "old" and e[0] != "start"]
    gate.set()
    old.join()
    assert q.stats().stopped_for_memory == 1


def test_states_and_errors():
    released = []
    q = JobQueue(budget=1000 * MB, rss=FakeMemory(), release=lambda: released.append(1))
    with q.slot("audit", MB) as job:
        assert q.place(job) == 0 and not released
    assert job.state == DONE and q.place(job) == -1 and released == [1]  # memory handed back after the job
    with pytest.raises(JobCancelled), q.slot("audit", MB) as job:
        job.cancel("stop")
        raise JobCancelled(job.reason)
    assert job.state == CANCELLED
    with pytest.raises(KeyboardInterrupt), q.slot("audit", MB) as job:  # as Streamlit stops a closed tab's script
        raise KeyboardInterrupt
    assert job.state == CANCELLED and "ended early" in job.reason
    stats = q.stats()
    assert (stats.completed, stats.cancelled, stats.running) == (1, 2, 0)
    with pytest.raises(Exception, match="unknown job kind"):
        q.submit("mining", MB)
    with pytest.raises(Exception, match="positive budget"):
        JobQueue(budget=0)


def test_a_job_that_still_cannot_fit_once_the_cache_is_empty_is_turned_away():
    mem = FakeMemory(base=900 * MB)
    q = JobQueue(budget=1000 * MB, rss=mem, make_room=lambda n: 0)  # nothing to drop
    q._idle_rss = 100 * MB  # measured before the server filled up with what the cache cannot give back
    with pytest.raises(JobCancelled, match="This audit job needs about 300 MB") as e, q.slot("audit", 300 * MB):
        pytest.fail("must not run")
    assert "VITDASH_MEMORY_MB" in str(e.value) and q.stats().waiting == 0
