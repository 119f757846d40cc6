"""The Model zoo page under AppTest: a folder in, a streamed audit, the population table and its charts."""
from __future__ import annotations

import os

from tests.apptest_utils import errors, page_test
from tests.test_zoo import tiny_zoo


def test_audit_the_tiny_zoo():
    at = page_test("zoo.py").run()
    assert not errors(at) and any("Enter the folder" in i.value for i in at.info)
    at.text_input(key="zoo_dir").input(str(tiny_zoo())).run()
    at.button(key="zoo_run").click().run()
    assert not errors(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Models"] == "7" and metrics["Unreadable"] == "0"
    assert float(metrics["R² predicting test_acc"]) > float(metrics["Baseline R² (the mean)"])
    assert not at.get("progress")  # the bar goes once the population is audited
    table = at.dataframe[0].value
    assert len(table) == 7 and {"optim::lr", "test_acc", "dist_parent", "verdict"} <= set(table.columns)
    # The chart controls rerun against the stored report without auditing again.
    at.selectbox(key="zoo_x").set_value("dist_init").run()
    at.selectbox(key="zoo_layer_stat").set_value("rel_to_parent").run()
    assert not errors(at) and {m.label: m.value for m in at.metric}["Models"] == "7"


def test_a_bad_folder_shows_an_error(tmp_path):
    at = page_test("zoo.py").run()
    at.text_input(key="zoo_dir").input(str(tmp_path / "nowhere")).run()
    at.button(key="zoo_run").click().run()
    assert any("is not a folder" in e for e in errors(at))


def test_library_folders_are_suggested(tmp_path, monkeypatch):
    """A folder of the team's library that holds several checkpoints is offered, ready to audit."""
    import torch

    from tests.tiny import tiny_vit

    team = tmp_path / "team"
    team.mkdir()
    for i in range(2):
        torch.save(tiny_vit().state_dict(), team / f"model{i}.pth")
    monkeypatch.setenv("VITDASH_MODEL_DIRS", str(team))
    monkeypatch.setenv("VITDASH_LIBRARY_DIR", str(tmp_path / "mine"))  # empty: not suggested
    at = page_test("zoo.py").run()
    assert not errors(at)
    assert at.text_input(key="zoo_dir").value == str(team)
    assert any(str(team) in c.value and "mine" not in c.value for c in at.caption)


def test_workers_are_bounded_by_the_cores_this_process_may_use(monkeypatch):
    """In a container or under taskset the host has more cores than the process may use: offer those only."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    at = page_test("zoo.py").run()
    assert at.number_input(key="zoo_workers").max == 2
