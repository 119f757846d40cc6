"""The per-user upload quota: counted across a user's sessions, not across users, released and pruned."""
from __future__ import annotations

import threading

import pytest

from vitdash.errors import VitdashError
from vitdash.load.uploads import UploadQuota, shared_quota

MB = 1 << 20


def test_a_user_is_held_to_the_quota_across_sessions_but_not_to_others_uploads():
    q = UploadQuota(100 * MB)
    q.hold("ana@x.org", "tab-1", 60 * MB)
    q.hold("bo@x.org", "tab-9", 90 * MB)  # another user: their own quota
    with pytest.raises(VitdashError) as e:
        q.hold("ana@x.org", "tab-2", 50 * MB)
    message = str(e.value)
    assert "50.0 MB" in message and "110.0 MB" in message and "100 MB" in message and "60.0 MB" in message
    assert q.used("ana@x.org") == 60 * MB  # the refused upload was not recorded
    q.hold("ana@x.org", "tab-1", 30 * MB)  # the same session replaces what it held
    q.hold("ana@x.org", "tab-2", 50 * MB)
    assert q.used("ana@x.org") == 80 * MB and q.used("ana@x.org", besides="tab-2") == 30 * MB
    q.hold("ana@x.org", "tab-1", 0)  # saved or cleared: released
    assert q.used("ana@x.org") == 50 * MB and q.used("bo@x.org") == 90 * MB


def test_ended_sessions_are_pruned():
    q = UploadQuota(100 * MB)
    q.hold("", "gone", 80 * MB)
    q.hold("", "here", 10 * MB)
    q.prune(lambda s: s == "here")
    assert q.used("") == 10 * MB
    q.hold("", "new", 90 * MB)


def test_concurrent_sessions_never_pass_the_quota_together():
    q = UploadQuota(100 * MB)
    refused = []

    def upload(i: int) -> None:
        try:
            q.hold("ana", f"tab-{i}", 30 * MB)
        except VitdashError:
            refused.append(i)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(refused) == 5 and q.used("ana") == 90 * MB


def test_quota_from_the_environment(monkeypatch):
    import vitdash.load.uploads as U

    monkeypatch.setattr(U, "_SHARED", None)
    monkeypatch.setenv("VITDASH_UPLOAD_QUOTA_MB", "5")
    assert shared_quota().limit == 5 * MB and shared_quota() is shared_quota()
    monkeypatch.setattr(U, "_SHARED", None)
    monkeypatch.setenv("VITDASH_UPLOAD_QUOTA_MB", "lots")
    with pytest.raises(VitdashError, match="VITDASH_UPLOAD_QUOTA_MB"):
        shared_quota()
    with pytest.raises(VitdashError, match="positive"):
        UploadQuota(0)
