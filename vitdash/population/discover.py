"""A model zoo's members from its small JSON files alone (generating factors in `config.json`, per-epoch
metrics in `result.json`), with each fine-tuned child linked to its pretrained parent: listing is instant."""
from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitdash.common.ordering import natural_key
from vitdash.common.results import finite_float
from vitdash.errors import VitdashError
from vitdash.load.files import CHECKPOINT_SUFFIXES, ZOO_EPOCH_PREFIX, zoo_epochs
from vitdash.load.library import scan_folder
from vitdash.load.sources import folder_metadata

# Ray Tune writes these beside the metrics in every result.json record; they are bookkeeping, not results.
RAY_BOOKKEEPING = {
    "timestamp", "time_this_iter_s", "time_total_s", "time_since_restore", "iterations_since_restore",
    "timesteps_total", "timesteps_since_restore", "episodes_total", "pid", "done", "date", "hostname",
    "node_ip", "trial_id", "experiment_id", "experiment_tag", "config", "checkpoint_dir_name",
    "should_checkpoint",
}


@dataclass
class ZooModel:
    """One member of the population, as found on disk (nothing read but JSON)."""

    path: str  # what `vitdash.load.sources.load` takes (absolute)
    name: str  # relative to the population's root
    group: str = ""  # 'pretraining' | 'finetuning' | '' (plain folder)
    parent: str | None = None  # the parent's `path`
    parent_checkpoint: str | None = None  # the parent's epoch named in the config, if not its last
    factors: dict[str, Any] = field(default_factory=dict)
    result: dict[str, float] = field(default_factory=dict)  # final epoch's metrics
    epochs: int = 0
    init: str | None = None  # the first of several checkpoints in the folder: the init when epoch 0 was saved

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "name": self.name, "group": self.group, "parent": self.parent,
                "parent_checkpoint": self.parent_checkpoint, "factors": dict(self.factors),
                "result": dict(self.result), "epochs": self.epochs, "init_checkpoint": self.init}


@dataclass
class Population:
    root: str
    layout: str  # 'model_zoo' | 'folder'
    models: list[ZooModel]
    notes: list[str] = field(default_factory=list)

    @property
    def varying_factors(self) -> list[str]:
        """The generating factors: config entries that differ between the models that have them (the
        constants are settings; a key only the children have, such as the parent's path, varies only
        when there are several parents)."""
        keys = list(dict.fromkeys(k for m in self.models for k in m.factors))
        return [k for k in keys if len({json.dumps(m.factors[k], sort_keys=True, default=str)
                                        for m in self.models if k in m.factors}) > 1]


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalar config entries; nested dicts joined with '::' (Ray Tune's own convention), lists as JSON."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "::"))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v, default=str)
        elif isinstance(v, (str, int, float, bool)) or v is None:
            out[key] = v
    return out


def _final_metrics(result: Any) -> tuple[dict[str, float], int]:
    """(numeric metrics of the last record, number of records) from result.json (JSON lines or a dict)."""
    records = [r for r in result if isinstance(r, Mapping)] if isinstance(result, list) else (
        [result] if isinstance(result, Mapping) else [])
    if not records:
        return {}, 0
    last = records[-1]
    metrics = {k: float(v) for k, v in last.items()
               if k not in RAY_BOOKKEEPING and finite_float(v) is not None}
    return metrics, len(records)


def _model_from(path: Path, root: Path) -> ZooModel:
    rel = path.relative_to(root)
    parts = rel.parts
    group = ("pretraining" if len(parts) >= 2 and parts[-2] == "pretraining" else
             "finetuning" if len(parts) >= 3 and parts[-3] == "finetuning" else "")
    model = ZooModel(path=str(path), name=str(rel), group=group)
    if path.is_dir():
        meta = folder_metadata(path)
        config = meta.get("config") if isinstance(meta.get("config"), Mapping) else meta.get("params")
        if isinstance(config, Mapping):
            model.factors = _flatten(config)
        model.result, model.epochs = _final_metrics(meta.get("result"))
        ckpts = zoo_epochs(path)
        if len(ckpts) >= 2:
            model.init = str(ckpts[0])
    return model


def _pretrained_refs(model: ZooModel) -> list[Path]:
    """Config values naming the checkpoint a model was fine-tuned from (keys that mention 'pretrain')."""
    return [Path(v).expanduser() for k, v in model.factors.items()
            if isinstance(v, str) and v and "pretrain" in k.lower()]


def _epoch_checkpoint(parent: Path, ref: Path) -> str | None:
    """The parent's epoch a child started from, when its config names one that exists here
    (`.../checkpoint_000049/checkpoints`); None means the parent's last checkpoint."""
    if len(ref.parts) < 2 or not ref.parts[-2].startswith(ZOO_EPOCH_PREFIX):
        return None
    found = parent / ref.parts[-2] / ref.name
    return str(found) if found.is_file() else None


def _link_parents(models: list[ZooModel], root: Path, notes: list[str]) -> None:
    """Zoo layout: finetuning/<parent>/<model> belongs to pretraining/<parent>. Otherwise a config entry
    naming a pretrained checkpoint (e.g. `pretrained::model::path`) inside another member: by path, or,
    for absolute paths from the machine that trained the zoo, by a member's (unique) folder name."""
    by_path = {Path(m.path) for m in models}
    names = Counter(p.name for p in by_path)
    for m in models:
        here, refs, parent = Path(m.path), _pretrained_refs(m), None
        parts = Path(m.name).parts
        if m.group == "finetuning":
            want = root.joinpath(*parts[:-3], "pretraining", parts[-2])
            if want in by_path:
                parent = want
            else:
                notes.append(f"{m.name}: its parent pretraining/{parts[-2]} is not in this folder")
        for ref in refs:
            if parent is not None:
                break
            base_dir = here if here.is_dir() else here.parent
            tries = [ref] if ref.is_absolute() else [base_dir / ref, root / ref]
            candidates = [Path(os.path.normpath(c)) for c in tries]
            parent = next((p for c in candidates for p in (c, *c.parents) if p in by_path and p != here), None)
            if parent is None:
                parent = next((p for p in sorted(by_path) if p != here and names[p.name] == 1 and p.name in ref.parts),
                              None)
        if parent is not None:
            m.parent = str(parent)
            m.parent_checkpoint = next((c for r in refs if (c := _epoch_checkpoint(parent, r))), None)


def discover(root: str | os.PathLike) -> Population:
    """The models under `root`: the ViT Model Zoo layout (`pretraining/<model>`, `finetuning/<parent>/<model>`)
    or any folder of checkpoint files and model folders (found like the library finds them)."""

    base = Path(os.path.abspath(Path(root).expanduser()))  # as typed: a symlinked folder keeps its own name
    if not base.is_dir():
        raise VitdashError(f"{base} is not a folder: give the folder that holds the population")
    paths = [Path(e.source) for e in scan_folder(base)]
    if paths == [base]:
        raise VitdashError(f"{base} is a single model, not a population: give the folder that holds several")
    if not paths:
        raise VitdashError(f"no checkpoints found under {base} (looked for model folders and for "
                           f"{'/'.join(CHECKPOINT_SUFFIXES)} files)")
    rank = {"pretraining": 0, "finetuning": 1}
    models = sorted((_model_from(p, base) for p in paths), key=lambda m: (rank.get(m.group, 2), natural_key(m.name)))
    notes: list[str] = []
    _link_parents(models, base, notes)
    layout = "model_zoo" if any(m.group for m in models) else "folder"
    return Population(str(base), layout, models, notes)
