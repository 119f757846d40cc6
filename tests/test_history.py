"""Audit history in SQLite: saved with every field, found again by content hash, filtered, exported, kept
across restarts, and safe when many sessions and processes write at once."""
from __future__ import annotations

import csv
import io
import sqlite3
import subprocess
import sys
import threading

import pytest

from vitdash.errors import VitdashError
from vitdash.history import CSV_COLUMNS, SCHEMA_VERSION, AuditHistory, default_path, record_audit
from vitdash.identity.family import report

ACC = {"top1": 0.9, "top5": 1.0, "n_images": 360, "data": {"name": "digits", "kind": "digits", "root": "sklearn"}}


def _rec(h: AuditHistory, i: int = 0, **kw):
    fields = dict(sha256=f"{i:064x}", file_name=f"model{i}.safetensors", size_bytes=1000 + i, verdict="trained",
                  confidence=0.9, family="ViT-S/16 @224", family_kind="exact", accuracy=ACC, reviewer="ana",
                  note=f"note {i}")
    fields.update(kw)
    return h.record(**fields)


def test_record_keeps_every_field_and_survives_a_restart(tmp_path):
    path = tmp_path / "h.sqlite"
    saved = _rec(AuditHistory(path), 1, note="  from the team drive  ", reviewer=" bo ")
    assert saved.id == 1 and saved.created_at.endswith("+00:00")
    assert (saved.reviewer, saved.note, saved.top1, saved.accuracy_data) == ("bo", "from the team drive", 0.9, "digits")
    again = AuditHistory(path)  # a new process would open the file the same way
    [found] = again.find_by_hash(f"{1:064x}")
    assert found == saved and found.accuracy == ACC
    assert "by bo" in found.describe() and "top-1 90.0% on digits" in found.describe()
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_find_by_hash_lists_newest_first_and_only_that_content(tmp_path):
    h = AuditHistory(tmp_path / "h.sqlite")
    first, other, second = _rec(h, 1), _rec(h, 2), _rec(h, 1, verdict="partial")
    assert [r.id for r in h.find_by_hash(f"{1:064x}")] == [second.id, first.id]
    assert h.find_by_hash("f" * 64) == [] and other.id == 2


def test_list_filters(tmp_path):
    h = AuditHistory(tmp_path / "h.sqlite")
    _rec(h, 1, verdict="init", reviewer="ana", note="100% sure")
    _rec(h, 2, verdict="trained", reviewer="bo", family="DeiT-S")
    _rec(h, 3, verdict="partial", reviewer="bo")
    assert [r.file_name for r in h.list(verdicts=["init", "partial"])] == ["model3.safetensors", "model1.safetensors"]
    assert [r.id for r in h.list(reviewer="bo")] == [3, 2]
    assert [r.id for r in h.list(text="deit")] == [2]  # case-insensitive, any text column
    assert [r.id for r in h.list(text="100%")] == [1]  # % and _ are literal
    assert [r.id for r in h.list(text="_")] == []
    today = h.list()[0].created_at[:10]
    assert len(h.list(since=today, until=today)) == 3 and h.list(until="2000-01-01") == []
    assert h.list(limit=1)[0].id == 3 and h.reviewers() == ["ana", "bo"] and h.count() == 3


def test_csv_export_round_trips(tmp_path):
    h = AuditHistory(tmp_path / "h.sqlite")
    _rec(h, 1, note='comma, "quotes"\nand a newline')
    _rec(h, 2, accuracy=None, verdict=None)
    rows = list(csv.DictReader(io.StringIO(h.to_csv())))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 2
    assert rows[1]["note"] == 'comma, "quotes"\nand a newline' and rows[1]["top1"] == "0.9"
    assert rows[0]["verdict"] == "" and rows[0]["top1"] == ""
    only = list(csv.DictReader(io.StringIO(h.to_csv(h.list(verdicts=["trained"])))))
    assert [r["id"] for r in only] == ["1"]


def test_concurrent_threads_and_processes_all_land(tmp_path):
    path = tmp_path / "h.sqlite"
    AuditHistory(path)
    script = ("import sys; from vitdash.history import AuditHistory\n"
              "h = AuditHistory(sys.argv[1])\n"
              "for i in range(20): h.record(sha256=f'{i:064x}', file_name='p', size_bytes=1, reviewer='proc')\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path)]) for _ in range(2)]
    errors = []

    def writer(n):
        try:
            h = AuditHistory(path)
            for i in range(20):
                _rec(h, n * 100 + i)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert errors == []
    h = AuditHistory(path)
    assert h.count() == 8 * 20 + 2 * 20 and len(h.list(reviewer="proc")) == 40


def test_path_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VITDASH_HISTORY_DB", str(tmp_path / "x" / "audits.db"))
    assert default_path() == tmp_path / "x" / "audits.db"
    assert AuditHistory().path.exists()
    monkeypatch.delenv("VITDASH_HISTORY_DB")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_path() == tmp_path / "data" / "vitdash" / "history.sqlite"


def test_bad_paths_and_files_give_messages(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(VitdashError, match="cannot open the audit history"):
        AuditHistory(tmp_path / "file" / "h.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(VitdashError, match="cannot open the audit history"):
        AuditHistory(junk)
    with pytest.raises(VitdashError, match="sha256"):
        AuditHistory(tmp_path / "ok.sqlite").record(sha256="", file_name="x", size_bytes=0)


def test_record_audit_from_real_analyses(tmp_path, tiny_vit_ckpt):
    from vitdash.trained import verdict

    h = AuditHistory(tmp_path / "h.sqlite")
    audit = verdict.audit(tiny_vit_ckpt)
    arch = report(tiny_vit_ckpt)
    rec = record_audit(h, tiny_vit_ckpt, audit=audit, family=arch, reviewer="ana", note="init check")
    assert rec.sha256 == tiny_vit_ckpt.sha256 and rec.verdict == audit.verdict == "init"
    assert rec.family == arch.match.name and rec.family_kind == arch.match.kind
    assert rec.details["audit"]["summary"] == audit.summary and "tensors" not in rec.details["audit"]
    assert h.find_by_hash(tiny_vit_ckpt.sha256)[0].id == rec.id


def test_describe_does_not_claim_a_custom_network_is_its_nearest_family_member(tmp_path):
    h = AuditHistory(tmp_path / "h.sqlite")
    assert "family ViT-S/16 @224" in _rec(h, 1).describe()
    custom = _rec(h, 2, family="ViT-Ti/16 @224", family_kind="custom").describe()
    assert "custom architecture (nearest family member ViT-Ti/16 @224)" in custom
    assert "family ViT-Ti/16 @224 (variant)" in _rec(h, 3, family="ViT-Ti/16 @224", family_kind="variant").describe()


def test_csv_floats_are_rounded(tmp_path):
    h = AuditHistory(tmp_path / "h.sqlite")
    _rec(h, 1, confidence=0.9055555462837219, accuracy={**ACC, "top1": 0.20033388981636062})
    row = next(csv.DictReader(io.StringIO(h.to_csv())))
    assert (row["confidence"], row["top1"]) == ("0.9056", "0.2003")


def test_an_old_history_reads_the_untrained_verdict_as_init(tmp_path):
    """Schema 1 wrote 'random' for an untrained model; the per-tensor word was already 'init'."""
    path = tmp_path / "h.sqlite"
    _rec(AuditHistory(path), 1, verdict="random")  # what a schema-1 database holds
    with sqlite3.connect(path) as con:
        con.execute("PRAGMA user_version=1")
    assert [r.verdict for r in AuditHistory(path).list(verdicts=["init"])] == ["init"]


def test_an_accuracy_off_the_models_domain_is_saved_only_when_confirmed(tmp_path, shared_dir):
    """A Fashion-MNIST model scored on 8x8 digits: the number says nothing about it, so it is not saved as the
    model's accuracy unless someone confirms, and then it says so wherever it is shown."""
    from vitdash.load.sources import load
    from vitdash.perform.engine import EngineOptions
    from vitdash.perform.evaluate import evaluate

    ckpt = load(shared_dir / "checkpoints" / "fmnist_vit_custom.pth")
    acc = evaluate(ckpt, "digits", EngineOptions(limit=40), measure_throughput=False)
    assert acc.off_domain.startswith("This model was trained on 28x28 grayscale Fashion-MNIST")
    assert "scikit-learn digits, 8x8 px: the number says nothing about it" in acc.off_domain
    assert acc.warnings[0] == acc.off_domain  # said first
    h = AuditHistory(tmp_path / "h.sqlite")
    with pytest.raises(VitdashError, match="not saved: This model was trained on"):
        record_audit(h, ckpt, accuracy=acc, reviewer="ana")
    assert h.count() == 0
    rec = record_audit(h, ckpt, accuracy=acc, reviewer="ana", off_domain_confirmed=True)
    assert "(not the model's domain)" in rec.describe()


V1_SCHEMA = """
CREATE TABLE audits (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL, sha256 TEXT NOT NULL,
    file_name TEXT NOT NULL, size_bytes INTEGER NOT NULL, source TEXT NOT NULL DEFAULT '', verdict TEXT,
    confidence REAL, family TEXT, family_kind TEXT, top1 REAL, accuracy_data TEXT, accuracy TEXT,
    reviewer TEXT NOT NULL DEFAULT '', note TEXT NOT NULL DEFAULT '', details TEXT);
CREATE INDEX audits_sha256 ON audits (sha256);
CREATE INDEX audits_created ON audits (created_at);
INSERT INTO audits (created_at, sha256, file_name, size_bytes, verdict, reviewer, note)
    VALUES ('2024-05-01T10:00:00+00:00', 'ab', 'old.pth', 7, 'random', 'ana', 'before sign-in');
PRAGMA user_version=1;
"""


def test_a_version_1_database_gains_the_user_column_and_keeps_its_audits(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:
        con.executescript(V1_SCHEMA)
    h = AuditHistory(path)
    [old] = h.list()
    assert (old.file_name, old.reviewer, old.user, old.note) == ("old.pth", "ana", "", "before sign-in")
    assert old.verdict == "init"  # and schema 2's rename of the untrained verdict applies on the way
    new = _rec(h, 2, reviewer="Bo", user="bo@example.com")
    assert new.user == "bo@example.com" and "by Bo (signed in as bo@example.com)" in new.describe()
    again = AuditHistory(path)  # opening a migrated file again changes nothing
    assert [r.id for r in again.list(user="bo@example.com")] == [new.id] and again.users() == ["bo@example.com"]
    assert [r.id for r in again.list(text="example.com")] == [new.id]
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert [r[1] for r in con.execute("PRAGMA table_info(audits)")].count("user") == 1
    assert next(iter(csv.DictReader(io.StringIO(again.to_csv()))))["user"] == "bo@example.com"


def test_concurrent_first_opens_of_an_old_database_migrate_once(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:
        con.executescript(V1_SCHEMA)
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            AuditHistory(path)
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and AuditHistory(path).count() == 1


def test_a_newer_schema_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "new.sqlite"
    AuditHistory(path)
    with sqlite3.connect(path) as con:
        con.execute("PRAGMA user_version=9")
    with pytest.raises(VitdashError, match="newer vitdash"):
        AuditHistory(path)
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 9
