"""The Compare page under AppTest: A from the sidebar, B by path; same weights across layouts, and a real change."""
from __future__ import annotations

import torch

from tests.apptest_utils import errors, page_test
from tests.test_compare import tiny_state, to_torchvision


def _files(tmp_path):
    sd = tiny_state()
    torch.save(sd, tmp_path / "a.pth")
    torch.save(to_torchvision(sd), tmp_path / "twin_torchvision.pth")
    tuned = {k: v.clone() for k, v in sd.items()}
    tuned["blocks.1.attn.qkv.weight"] *= 1.5
    torch.save(tuned, tmp_path / "tuned.pth")
    return tmp_path


def _compare(tmp_path, b_name: str, verdicts: bool):
    at = page_test("compare.py", source=str(tmp_path / "a.pth")).run()
    assert not errors(at) and any("Choose checkpoint B" in i.value for i in at.info)
    at.radio(key="compare_kind").set_value("Path on server").run()
    at.text_input(key="compare_path").input(str(tmp_path / b_name)).run()
    at.checkbox(key="compare_verdicts").set_value(verdicts).run()
    return at.button(key="compare_run").click().run()


def test_same_weights_in_another_layout(tmp_path):
    at = _compare(_files(tmp_path), "twin_torchvision.pth", verdicts=False)
    assert not errors(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Same weights"] == "yes" and metrics["Head"] == "unchanged"
    assert any("Same weights" in s.value and "torchvision" in s.value for s in at.success)
    assert len(at.dataframe) == 1


def test_a_change_with_verdict_statistics(tmp_path):
    at = _compare(_files(tmp_path), "tuned.pth", verdicts=True)
    assert not errors(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Same weights"] == "no" and metrics["Overall relative change"] != "-"
    assert any("blocks.1" in i.value for i in at.info)  # the summary names the block that moved
    assert any(s.value == "Change in the verdict statistics" for s in at.subheader)
    table = at.dataframe[0].value
    qkv = table[table["tensor"] == "blocks.1.attn.qkv.weight"].iloc[0]
    assert abs(qkv["relative change"] - 0.5) < 1e-6 and "Δ structure" in table


def test_a_missing_b_shows_an_error(tmp_path):
    at = _compare(_files(tmp_path), "missing.pth", verdicts=False)
    assert any("does not exist" in e for e in errors(at))


def test_without_a_checkpoint_the_page_asks_for_one():
    at = page_test("compare.py").run()
    assert not at.exception and any("Pick a checkpoint" in i.value for i in at.info)


def test_library_lists_the_folders_configured_in_secrets(tmp_path, monkeypatch):
    """As the sidebar does: a folder named only in secrets.toml is part of the library B is chosen from."""
    monkeypatch.delenv("VITDASH_MODEL_DIRS", raising=False)
    monkeypatch.setenv("VITDASH_LIBRARY_DIR", str(tmp_path / "user-library"))
    team = tmp_path / "team-models"
    team.mkdir()
    torch.save(tiny_state(), team / "theirs.pth")
    at = page_test("compare.py", source=str(_files(tmp_path) / "a.pth"))
    at.secrets["vitdash"] = {"model_dirs": [str(team)]}
    at.run()
    at.radio(key="compare_kind").set_value("Library").run()
    assert any(o.startswith("theirs.pth (team-models/") for o in at.selectbox(key="compare_library").options)
