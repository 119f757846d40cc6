"""Lineage on real relatives (tests/lineage_cases.py): the right relation for every case through the CLI, the
claims checked against the weights, fingerprints computed once, the report embedding the same result."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.lineage_cases import DIGITS_EXPECTED, DINO_EXPECTED
from vitdash.cli import main
from vitdash.history import SCHEMA_VERSION, AuditHistory
from vitdash.load.sources import load
from vitdash.population import lineage as L
from vitdash.population.lineage_fingerprint import Fingerprint, FingerprintIndex, fingerprint
from vitdash.report import generate


@pytest.fixture(scope="module")
def history_db(tmp_path_factory) -> Path:
    """One database for the module: fingerprints computed by one test are reused by the next, as in use."""
    return tmp_path_factory.mktemp("lineage") / "history.sqlite"


@pytest.fixture(autouse=True)
def _history_env(history_db, monkeypatch):
    monkeypatch.setenv("VITDASH_HISTORY_DB", str(history_db))


def query_path(root: Path, name: str) -> Path:
    return root / "queries" / name if (root / "queries" / name).exists() else root / "library" / name


def cli_lineage(capsys, query: Path, library: Path) -> dict:
    assert main(["lineage", str(query), "--library", str(library), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def found(result: dict) -> dict[str, tuple[str, str | None]]:
    """library entry (its file or folder name) -> (relation, ancestor)."""
    return {Path(r["path"]).name: (r["relation"], r["evidence"].get("ancestor")) for r in result["relations"]}


def check(result: dict, expected: dict[str, tuple[str, str | None]], library: Path) -> None:
    got = found(result)
    table = "\n".join(f"  {r['relation']:<13} z={r['score']!s:<22} {Path(r['path']).name}: {r['summary'][:120]}"
                      for r in result["relations"])
    for name, want in expected.items():
        assert got.get(name) == want, f"{result['checkpoint']['name']} vs {name}: {got.get(name)}, want {want}\n{table}"
    if set(expected) | {result["checkpoint"]["name"]} >= {p.name for p in library.iterdir()}:
        assert sum(r["relation"] in ("identical", "derived_from", "sibling") for r in result["relations"]) == sum(
            w[0] in ("identical", "derived_from", "sibling") for w in expected.values()), table


@pytest.mark.parametrize("query", sorted(DIGITS_EXPECTED))
def test_digits_family_through_the_cli(digits_family, capsys, query):
    result = cli_lineage(capsys, query_path(digits_family, query), digits_family / "library")
    check(result, DIGITS_EXPECTED[query], digits_family / "library")
    assert all(set(r) >= {"path", "relation", "score", "evidence"} for r in result["relations"])


@pytest.mark.parametrize("query", sorted(DINO_EXPECTED))
def test_dinov2_family_through_the_cli(dino_family, capsys, query):
    result = cli_lineage(capsys, dino_family / "queries" / query, dino_family / "library")
    check(result, DINO_EXPECTED[query], dino_family / "library")


def test_siblings_of_a_tiny_fine_tune_need_their_parent_in_the_library(dino_family, capsys):
    """Two 24-step fine-tunes of DINOv2 differ by 0.3% of their norm: too little for the balance to tell which
    came first, so alone the head added is all there is (weak evidence, said so); with their parent in the
    library, both descend from it, and they read as siblings."""
    query = dino_family / "queries" / "dinov2-ft56-head"
    alone = cli_lineage(capsys, query, dino_family / "sibling")["relations"][0]
    assert alone["relation"] == "derived_from" and alone["evidence"]["direction"]["strength"] == "weak"
    assert any("not readable" in c for c in alone["evidence"]["direction"]["cues"])
    assert main(["lineage", str(query), "--library", str(dino_family / "library"), str(dino_family / "sibling"),
                 "--json"]) == 0
    got = found(json.loads(capsys.readouterr().out))
    assert got["dinov2-ft56"] == ("sibling", None) and got["dinov2-small-hf"] == ("derived_from", "it")


def test_derived_evidence_names_the_edits(digits_family, dino_family, capsys):
    ft = next(r for r in cli_lineage(capsys, dino_family / "queries" / "dinov2-ft56-head", dino_family / "library")
              ["relations"] if r["relation"] == "derived_from")
    ev = ft["evidence"]
    assert ev["pos_embed"]["grid_it"] == [37, 37] and ev["pos_embed"]["grid_query"] == [4, 4]
    assert ev["pos_embed"]["ancestor"] == "it" and ev["head"]["status"] == "added"
    assert "8-class head added" in ft["summary"] and "block" in ft["summary"]
    resampled = next(t for t in ev["tensors"] if t["name"] == "pos_embed")
    assert resampled["resampled"] and resampled["r"] > 0.9
    parity = cli_lineage(capsys, digits_family / "library" / "parity.safetensors", digits_family / "library")
    rel = next(r for r in parity["relations"] if Path(r["path"]).name == "digits-vit-trained")
    assert rel["evidence"]["head"]["status"] == "resized" and "head resized 10 -> 2 classes" in rel["summary"]
    moved = [g for g in rel["evidence"]["groups"] if g["group"].startswith("blocks.")]
    assert len(moved) == 4 and all(g["rel_change"] > 0 for g in moved)
    shallow = cli_lineage(capsys, digits_family / "queries" / "depth3.safetensors", digits_family / "library")
    rel = next(r for r in shallow["relations"] if Path(r["path"]).name == "digits-vit-trained")
    assert rel["evidence"]["blocks_only_in_it"] == [3] and "blocks only in it: block 3" in rel["summary"]


def test_the_checkpoint_itself_is_skipped(digits_family, capsys):
    result = cli_lineage(capsys, digits_family / "library" / "parity.safetensors", digits_family / "library")
    assert "parity.safetensors" not in found(result)
    assert result["found_in_library_as"] == "library/parity.safetensors"
    assert any(s["reason"] == "the checkpoint itself" for s in result["skipped"])


def test_claims_beside_what_the_weights_show(digits_family, dino_family, capsys):
    lib = digits_family / "library"
    false = cli_lineage(capsys, digits_family / "queries" / "twin-seed2.safetensors", lib)["claims"]
    assert [c["status"] for c in false] == ["contradicted"]
    assert "claims to be fine-tuned from digits-vit-trained" in false[0]["message"]
    assert "unrelated to library/digits-vit-trained" in false[0]["message"]
    elsewhere = cli_lineage(capsys, digits_family / "queries" / "grid6.safetensors", lib)["claims"]
    assert [c["status"] for c in elsewhere] == ["not in library"]
    assert "google/vit-base-patch16-224 is not in the library" in elsewhere[0]["message"]
    assert "its weights descend from library/digits-vit-trained" in elsewhere[0]["message"]
    true = cli_lineage(capsys, lib / "parity.safetensors", lib)["claims"]
    assert [c["status"] for c in true] == ["confirmed"] and "descend from library/digits-vit-trained" in true[0]["message"]
    dino = cli_lineage(capsys, dino_family / "queries" / "dinov2-ft56", dino_family / "library")["claims"]
    assert {c["claim"]["where"]: c["status"] for c in dino} == {
        "config.json _name_or_path": "confirmed", "model card base_model": "confirmed"}
    assert not cli_lineage(capsys, digits_family / "queries" / "shift.safetensors", lib)["claims"]


def test_fingerprints_are_computed_once_and_searched_without_reading(digits_family, history_db, monkeypatch):
    lib = L.library_in([digits_family / "library"])
    query = load(digits_family / "queries" / "shift.safetensors")
    first = L.lineage(query, lib, history=AuditHistory(history_db))
    computed, loaded = [], []
    monkeypatch.setattr(L, "fingerprint", lambda ckpt: computed.append(ckpt) or fingerprint(ckpt))
    monkeypatch.setattr(L, "load", lambda src: loaded.append(Path(src).name) or load(src))
    again = L.lineage(query, lib, history=AuditHistory(history_db))
    assert computed == []  # every fingerprint came from the database
    related = {Path(r.path).name for r in again.relations if r.related}
    assert sorted(loaded) == sorted(related) and again.candidates == len(related)  # read: only the candidates
    assert [r.to_dict() for r in again.relations] == [r.to_dict() for r in first.relations]


def test_fingerprint_round_trip_and_vectorized_search(digits_family):
    ckpts = [load(p) for p in sorted((digits_family / "library").iterdir())]
    prints = [Fingerprint.from_bytes(fingerprint(c).to_bytes()) for c in ckpts]
    again = fingerprint(ckpts[0])
    assert prints[0].plan == again.plan and (prints[0].samples == again.samples).all()
    matches = FingerprintIndex(prints).search(prints[0])
    assert matches[0].mean_r == pytest.approx(1.0, abs=1e-3) and matches[0].candidate
    pairwise = [FingerprintIndex([p]).search(prints[0])[0] for p in prints]
    assert [m.z for m in matches] == pytest.approx([m.z for m in pairwise])


def test_report_embeds_the_same_result(digits_family, capsys):
    query = digits_family / "queries" / "shift.safetensors"
    cli = cli_lineage(capsys, query, digits_family / "library")
    rep = generate(load(query), attention_images=0, lineage_library=L.library_in([digits_family / "library"]))
    section = next(s for s in rep.sections if s.key == "lineage")
    assert section.error is None and len(section.figures) == 2
    embedded = json.loads(json.dumps(rep.to_dict()["sections"]["lineage"]))
    assert embedded["relations"] == cli["relations"] and embedded["claims"] == cli["claims"]
    assert "derived_from" in rep.to_html()


def test_bad_input_exits_2_with_the_reason(tmp_path, capsys, digits_family):
    assert main(["lineage", str(tmp_path / "missing.pth"), "--library", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    q = digits_family / "queries" / "shift.safetensors"
    assert main(["lineage", str(q), "--library", str(tmp_path / "nowhere")]) == 2
    assert "library folder" in capsys.readouterr().err


def test_an_older_history_database_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE audits (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL, "
                      "sha256 TEXT NOT NULL, file_name TEXT NOT NULL, size_bytes INTEGER NOT NULL, source TEXT NOT "
                      "NULL DEFAULT '', verdict TEXT, confidence REAL, family TEXT, family_kind TEXT, top1 REAL, "
                      "accuracy_data TEXT, accuracy TEXT, reviewer TEXT NOT NULL DEFAULT '', note TEXT NOT NULL "
                      "DEFAULT '', details TEXT); PRAGMA user_version=1;")
    con.execute("INSERT INTO audits (created_at, sha256, file_name, size_bytes, verdict) "
                "VALUES ('2025', 'ab', 'old.pth', 1, 'random')")
    con.commit()
    con.close()
    history = AuditHistory(path)
    old = history.find_by_hash("ab")[0]
    assert old.file_name == "old.pth" and old.verdict == "init"  # schema 2's change ran too
    history.save_fingerprint("ab", 1, "old.pth", b"\x00\x01")
    assert history.fingerprints(["ab", "cd"], 1) == {"ab": b"\x00\x01"} and history.fingerprints(["ab"], 2) == {}
    history.remember_hash("/x.pth", 10, 5, "ab")
    assert history.known_hashes([("/x.pth", 10, 5), ("/y.pth", 1, 1)]) == {"/x.pth": "ab"}
    assert history.known_hashes([("/x.pth", 10, 6)]) == {}  # rewritten since
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4


def test_family_tree_of_the_digits_family(digits_family):
    from vitdash.population.lineage_tree import family_tree

    tree = family_tree(L.library_in([digits_family / "library", digits_family / "queries"]))
    nodes = {n["name"]: n for n in tree.nodes}
    copies = set(nodes["library/digits-vit-trained"]["copies"])
    assert copies == {"queries/trained-fp16.safetensors", "queries/trained-bf16.safetensors",
                      "queries/trained-torchvision.pth"}  # one node: the fp32 original names it
    parents = {e.target: e.source for e in tree.edges if e.nearest}
    assert parents == {
        "library/digits-vit-trained": "library/digits-vit-init",
        "queries/from-saved-init.safetensors": "library/digits-vit-init",
        "library/parity.safetensors": "library/digits-vit-trained",
        "queries/shift.safetensors": "library/digits-vit-trained",
        "queries/grid6.safetensors": "library/digits-vit-trained",
        "queries/depth3.safetensors": "library/digits-vit-trained"}
    assert nodes["queries/grid6.safetensors"]["generation"] == 2
    loners = {"library/twin-seed1.safetensors", "queries/twin-seed2.safetensors", "library/fresh-seed3.safetensors",
              "queries/fresh-seed4.safetensors"}
    assert not any(e.source in loners or e.target in loners for e in tree.edges)
    assert not [e for e in tree.edges if e.relation == "sibling"]  # all kin here share an ancestor in the library


def test_a_stopped_search_lists_what_it_left(digits_family, tmp_path):
    """The job queue's cancel: nothing more is read or compared, and what was left is said."""
    lib = L.library_in([digits_family / "library"])
    query = load(digits_family / "queries" / "shift.safetensors")
    fresh = AuditHistory(tmp_path / "h.sqlite")  # nothing fingerprinted yet: the stop comes before any entry
    stopped = L.lineage(query, lib, history=fresh, should_stop=lambda: True)
    assert stopped.stopped and stopped.relations == [] and len(stopped.skipped) == len(lib)
    assert stopped.to_dict()["stopped"] is True and L.lineage_bytes(query, lib) > 3 * query.nbytes
