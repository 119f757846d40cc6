"""The Audit history page under AppTest: recording with a reviewer, 'already audited', filters, CSV, errors."""
from __future__ import annotations

import csv
import io

import pytest

from tests.apptest_utils import errors, page_test
from vitdash.history import AuditHistory

TIMM = "timm:vit_tiny_patch16_224"


@pytest.fixture()
def db(tmp_path, monkeypatch):
    path = tmp_path / "history.sqlite"
    monkeypatch.setenv("VITDASH_HISTORY_DB", str(path))
    return path


def _seed(path, n=3):
    h = AuditHistory(path)
    for i in range(n):
        h.record(sha256=f"{i:064x}", file_name=f"m{i}.pth", size_bytes=10, verdict=["trained", "init"][i % 2],
                 reviewer=["ana", "bo"][i % 2], note=f"note {i}")
    return h


def test_empty_history_without_a_checkpoint(db):
    at = page_test("history.py").run()
    assert errors(at) == []
    assert any("Pick a checkpoint" in c.value for c in at.caption)
    assert any("No audits saved yet" in i.value for i in at.info)


def test_lists_filters_and_exports(db):
    _seed(db)
    at = page_test("history.py").run()
    assert errors(at) == []
    assert len(at.dataframe[0].value) == 3
    at.multiselect(key="history_verdicts").set_value(["init"]).run()
    assert list(at.dataframe[0].value["file"]) == ["m1.pth"]
    at.multiselect(key="history_verdicts").set_value([]).run()
    at.selectbox(key="history_filter_reviewer").set_value("ana").run()
    assert list(at.dataframe[0].value["file"]) == ["m2.pth", "m0.pth"]
    at.text_input(key="history_search").set_value("note 2").run()
    assert list(at.dataframe[0].value["file"]) == ["m2.pth"]
    at.text_input(key="history_search").set_value("nothing like this").run()
    assert any("No audit matches" in i.value for i in at.info) and errors(at) == []


def test_csv_download_matches_the_filtered_rows(db):
    h = _seed(db)
    rows = list(csv.DictReader(io.StringIO(h.to_csv(h.list(reviewer="bo")))))
    assert [r["file_name"] for r in rows] == ["m1.pth"]
    at = page_test("history.py").run()
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Download 3 audit(s) as CSV"]


def test_recording_needs_a_reviewer_then_saves_and_recognizes_the_file(db):
    at = page_test("history.py", TIMM, timeout=120).run()
    assert errors(at) == []
    assert any("Not audited before" in c.value for c in at.caption)
    at.button[0].click().run()  # the form's submit button, no reviewer typed
    assert any("reviewer name" in e.value for e in at.error)
    assert AuditHistory(db).count() == 0

    at.text_input(key="history_reviewer").set_value("ana")
    at.text_area(key="history_note").set_value("init weights, as expected")
    at.button[0].click().run()
    assert [e for e in errors(at) if "reviewer" not in e] == []
    assert [s.value.split(":")[0] for s in at.success] == ["Saved audit #1 (the first of this file)"]
    assert not any("before" in i.value for i in at.info)  # one message for one save
    [rec] = AuditHistory(db).list()
    assert (rec.reviewer, rec.note, rec.verdict) == ("ana", "init weights, as expected", "init")
    assert at.button(key="history_report").proto.label == "Make an HTML report"

    again = page_test("history.py", TIMM, timeout=120).run()  # a later visit says it was audited
    assert any("Audited 1 time before" in i.value and "by ana" in i.value for i in again.info)


def test_unusable_database_path_is_a_message(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("VITDASH_HISTORY_DB", str(tmp_path / "file" / "h.sqlite"))
    at = page_test("history.py").run()
    assert len(at.exception) == 0
    assert any("cannot open the audit history" in e.value for e in at.error)


def test_accuracy_measured_on_the_benchmark_page_is_saved(db, demo_pair):
    from vitdash.load.sources import load
    from vitdash.perform.engine import EngineOptions
    from vitdash.perform.evaluate import evaluate

    ckpt = load(demo_pair.trained)
    result = evaluate(ckpt, "digits", EngineOptions(device="cpu", limit=60), measure_throughput=False)
    at = page_test("history.py", str(demo_pair.trained), timeout=120)
    at.session_state["benchmark_result"] = (ckpt.sha256, result)
    at.run()
    assert any("'Does it perform?' page: top-1" in c.value for c in at.caption)
    at.text_input(key="history_reviewer").set_value("ana")
    at.button[0].click().run()
    assert errors(at) == []
    [rec] = AuditHistory(db).list()
    assert rec.top1 == result.top1 and rec.accuracy_data == "digits" and rec.accuracy["n_images"] == 60
    assert rec.family_kind == "custom" and rec.verdict in ("trained", "partial")


def test_bad_accuracy_data_is_a_message_and_nothing_is_saved(db, tmp_path):
    at = page_test("history.py", TIMM, timeout=120).run()
    at.text_input(key="history_reviewer").set_value("ana")
    at.text_input(key="history_data").set_value(str(tmp_path / "missing"))
    at.button[0].click().run()
    assert len(at.exception) == 0
    assert any("does not exist" in e.value for e in at.error)
    assert AuditHistory(db).count() == 0


def test_an_accuracy_off_the_models_domain_needs_an_explicit_confirmation(db, shared_dir):
    """The Fashion-MNIST model scored on 8x8 digits: the form says so, and saving keeps the audit but not the number
    unless the box is ticked; then the record says it was not the model's domain."""
    from vitdash.load.sources import load
    from vitdash.perform.engine import EngineOptions
    from vitdash.perform.evaluate import evaluate

    path = shared_dir / "checkpoints" / "fmnist_vit_custom.pth"
    ckpt = load(path)
    result = evaluate(ckpt, "digits", EngineOptions(device="cpu", limit=40), measure_throughput=False)
    at = page_test("history.py", str(path), timeout=120)
    at.session_state["benchmark_result"] = (ckpt.sha256, result)
    at.run()
    assert any("Fashion-MNIST" in w.value for w in at.warning)
    assert at.checkbox(key="history_off_domain").value is False
    at.text_input(key="history_reviewer").set_value("ana")
    at.button[0].click().run()
    assert errors(at) == [] and any(w.value.startswith("Accuracy not saved:") for w in at.warning)
    [rec] = AuditHistory(db).list()
    assert rec.top1 is None
    at.checkbox(key="history_off_domain").check()
    at.button[0].click().run()
    saved = AuditHistory(db).list()[0]
    assert saved.top1 == result.top1 and "(not the model's domain)" in saved.describe()
