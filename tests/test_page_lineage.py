"""The "Where does it come from?" page under AppTest: every lineage case reads as on the CLI, the evidence against
one relative, the claims, and the library's family tree."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.apptest_utils import errors, page_test
from tests.lineage_cases import DIGITS_EXPECTED, DINO_EXPECTED
from tests.test_lineage import query_path


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("VITDASH_HISTORY_DB", str(tmp_path_factory.getbasetemp() / "page-lineage.sqlite"))


def _search(at, source: Path, library: Path):
    at.session_state["source"] = str(source)
    at.run()
    at.radio(key="lineage_scope").set_value("Folders on server").run()
    at.text_input(key="lineage_folders").input(str(library)).run()
    at.button(key="lineage_run").click().run()
    assert not errors(at), errors(at)
    return at


def _relations(at) -> dict[str, str]:
    table = next(d.value for d in at.dataframe if "relation" in d.value.columns)
    return {Path(n).name: rel for n, rel in zip(table["library checkpoint"], table["relation"])}


def _check_all(root: Path, expected: dict, timeout: float = 120) -> None:
    at = page_test("lineage.py", timeout=timeout).run()
    assert any("Pick a checkpoint" in i.value for i in at.info)
    for query, want in expected.items():
        got = _relations(_search(at, query_path(root, query), root / "library"))
        assert {n: got.get(n) for n in want} == {n: rel for n, (rel, _) in want.items()}, query


def test_every_digits_case_reads_as_on_the_cli(digits_family):
    _check_all(digits_family, DIGITS_EXPECTED)


def test_every_dinov2_case_reads_as_on_the_cli(dino_family):
    _check_all(dino_family, DINO_EXPECTED)


def test_evidence_claims_and_family_tree(digits_family):
    at = _search(page_test("lineage.py", timeout=180), digits_family / "queries" / "grid6.safetensors",
                 digits_family / "library")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Relatives found"] == "3" and metrics["Checkpoints compared"] == "5"
    assert any("derived from library/digits-vit-trained" in s.value for s in at.success)
    claims = next(d.value for d in at.dataframe if "status" in d.value.columns)
    assert list(claims["status"]) == ["not in library"]
    assert at.selectbox(key="lineage_relative").value == "library/digits-vit-trained"
    assert any("resampling it to the query's grid" in m.value for m in at.markdown)
    at.button(key="lineage_tree_run").click().run()
    assert not errors(at)
    charts = at.get("plotly_chart")
    assert len(charts) == 3  # relatedness, per-block heatmap, family tree
    tree = charts[-1].proto.spec
    assert "Family tree of the library (5 distinct checkpoints, 2 derived-from edges)" in tree  # init > trained > parity


def test_a_missing_folder_is_a_message(tmp_path):
    at = page_test("lineage.py", source="timm:vit_tiny_patch16_224").run()
    at.radio(key="lineage_scope").set_value("Folders on server").run()
    at.text_input(key="lineage_folders").input(str(tmp_path / "nowhere")).run()
    at.button(key="lineage_run").click().run()
    assert any("does not exist" in e for e in errors(at))
