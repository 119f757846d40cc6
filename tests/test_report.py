"""Reports: real analyses of the demo pair gathered into one offline HTML file plus JSON, from the library
and from `python -m vitdash report`."""
from __future__ import annotations

import json
import re

import pytest

from vitdash import pipeline
from vitdash import report as R
from vitdash.cli import main
from vitdash.errors import VitdashError
from vitdash.load.sources import load
from vitdash.trained import verdict


@pytest.fixture(scope="module")
def trained_report(demo_pair, tmp_path_factory):
    from vitdash.history import AuditHistory

    history = AuditHistory(tmp_path_factory.mktemp("h") / "h.sqlite")
    ckpt = load(demo_pair.trained)
    history.record(sha256=ckpt.sha256, file_name=ckpt.name, size_bytes=ckpt.size_bytes, verdict="trained",
                   reviewer="ana", note="seen before")
    said = []
    rep = R.generate(ckpt, data="digits", limit=200, attention_images=2, history=history, progress=said.append)
    return rep, said


def test_every_analysis_is_a_section_with_real_results(trained_report):
    rep, said = trained_report
    assert [s.key for s in rep.sections] == ["checkpoint", "verdict", "architecture", "accuracy", "attention",
                                             "history"]
    assert [s.error for s in rep.sections] == [None] * 6
    data = rep.to_dict()["sections"]
    assert data["checkpoint"]["layout"] == "timm" and data["checkpoint"]["sha256"] == rep.checkpoint["sha256"]
    assert data["verdict"]["verdict"] in ("trained", "partial")  # not "init": the demo model is trained
    assert data["architecture"]["architecture"]["embed_dim"] == 64
    assert data["accuracy"]["top1"] > 0.85 and data["accuracy"]["n_images"] == 200
    assert len(data["attention"]) == 2 and len(data["attention"][0]["map"]) == 4  # a 4x4 patch grid
    assert data["history"][0]["note"] == "seen before"
    starts = [p.stage for p in said if p.message == p.stage]  # each step's start; its own reports follow
    assert starts == ["auditing the weights", "reading the architecture", "measuring accuracy on digits",
                      "computing attention maps"]
    assert any(p.stage == "measuring accuracy on digits" and p.done == 200 for p in said)


def test_html_is_self_contained_with_plotly_inlined_once(trained_report):
    rep, _ = trained_report
    page = rep.to_html()
    n_figures = sum(len(s.figures) for s in rep.sections)
    assert n_figures >= 7 and len(rep.sections[1].figures) == 2  # the verdict's depth x role heatmaps too
    assert len(re.findall(r'class="plotly-graph-div"', page)) == n_figures
    assert page.count("plotly.js v") == 1  # the library's banner: one inline copy for all figures
    assert not re.search(r'<script[^>]+src=|<link[^>]+href="http|<img[^>]+src="http', page)
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', page)) == 2
    assert "Is it trained?" in page and "seen before" in page


def test_json_matches_and_html_escapes_text(demo_pair, tmp_path):
    ckpt = load(demo_pair.init)
    ckpt.name = "<script>alert(1)</script>"
    rep = R.Report.for_checkpoint(ckpt, [R.verdict_section(verdict.audit(ckpt))])
    html_path, json_path = rep.write(tmp_path / "r.html")
    assert json_path == tmp_path / "r.json"
    assert json.loads(json_path.read_text()) == json.loads(rep.to_json())
    assert json.loads(json_path.read_text())["sections"]["verdict"]["verdict"] == "init"  # the init twin
    text = html_path.read_text()
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_a_failing_analysis_becomes_a_message_not_a_lost_report(demo_pair, tmp_path):
    rep = R.generate(load(demo_pair.init), data=str(tmp_path / "no-such-folder"), attention_images=0)
    by_key = {s.key: s for s in rep.sections}
    assert "does not exist" in by_key["accuracy"].error and by_key["verdict"].error is None
    assert rep.to_dict()["sections"]["accuracy"] == {"error": by_key["accuracy"].error}
    assert "does not exist" in rep.to_html()


def test_non_vit_checkpoint_gets_the_sections_that_apply(tmp_path):
    import torch

    from vitdash.load.sources import checkpoint_from_state_dict

    cnn = {"conv1.weight": torch.randn(16, 3, 3, 3), "layer1.0.conv1.weight": torch.randn(16, 16, 3, 3),
           "fc.weight": torch.randn(10, 16)}
    rep = R.generate(checkpoint_from_state_dict(cnn, source="cnn"))
    assert [s.key for s in rep.sections] == ["checkpoint", "verdict"]


def test_cli_report_writes_html_and_json(demo_pair, tmp_path, capsys):
    out = tmp_path / "report.html"
    code = main(["report", str(demo_pair.trained), "-o", str(out), "--data", "digits", "--limit", "100",
                 "--attention-images", "1"])
    assert code == 0
    assert out.stat().st_size > 1_000_000  # plotly.js is inside
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["sections"]["accuracy"]["n_images"] == 100
    assert f"wrote {out}" in capsys.readouterr().out


def test_cli_report_on_a_bad_file_exits_2_with_a_message(tmp_path, capsys):
    bad = tmp_path / "photo.pth"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    assert main(["report", str(bad), "-o", str(tmp_path / "r.html")]) == 2
    assert "PNG image" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


def test_the_pipeline_runs_its_steps_reports_them_and_keeps_going_after_a_failure(tiny_vit_ckpt, monkeypatch):
    def no_architecture(ckpt):
        raise VitdashError("architecture unreadable")

    monkeypatch.setattr(pipeline, "report", no_architecture)
    seen = []
    found = pipeline.run_pipeline(tiny_vit_ckpt, progress=seen.append)
    assert found.audit is not None and found.audit.verdict in ("init", "partial", "trained")
    assert found.architecture is None and found.errors == {"architecture": "architecture unreadable"}
    assert [p.stage for p in seen if p.message == p.stage] == ["auditing the weights", "reading the architecture"]
    assert [p.done for p in seen if p.stage == "auditing the weights"][-1] == len(found.audit.tensors)
    keys = lambda *a, **k: [key for key, _ in pipeline.pipeline_steps(tiny_vit_ckpt, *a, **k)]  # noqa: E731
    assert keys("digits") == ["audit", "architecture", "accuracy"] and keys("digits", accuracy=found) == keys()


def test_a_page_reports_the_accuracy_it_measured_without_measuring_again(demo_pair, monkeypatch):
    """The Overview's and History's report button pass the session's accuracy; nothing is evaluated again."""
    from vitdash.perform import evaluate as E
    from vitdash.perform.engine import EngineOptions

    ckpt = load(demo_pair.trained)
    measured = E.evaluate(ckpt, "digits", EngineOptions(limit=50), measure_throughput=False)
    monkeypatch.setattr(pipeline, "evaluate", lambda *a, **k: pytest.fail("evaluated again"))
    rep = R.generate(ckpt, accuracy=measured, attention_images=1)
    assert [s.key for s in rep.sections] == ["checkpoint", "verdict", "architecture", "accuracy", "attention"]
    assert rep.to_dict()["sections"]["accuracy"]["n_images"] == 50
    assert rep.to_html().count('<img alt="') == 1  # the attention overlay, with its colour bar
