"""What a checkpoint says it was made from, and whether its weights agree.

Claims are read where the tools people use write them: transformers' `config.json` `_name_or_path` (where the
weights were loaded from before `save_pretrained`), a model card's `base_model` (the Hub's model tree, which is
self-reported), timm's `pretrained_cfg` (`hf_hub_id`, `tag`), safetensors `__metadata__` entries naming a base,
and the training arguments a training script pickled beside the weights (timm's `args.pretrained` with
`args.model`, `initial_checkpoint`, DeiT/MAE's `finetune`, `resume`). A claim names something; it is matched to
library entries by name and then checked against the relations the weights show.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vitdash.load.checkpoint import Checkpoint
from vitdash.load.files import CHECKPOINT_SUFFIXES

# Training-argument keys that name the checkpoint a run started from.
_ARG_KEYS = ("initial_checkpoint", "finetune", "pretrained_path", "pretrained_checkpoint", "init_checkpoint",
             "resume", "model_name_or_path", "base_model", "pretrained_weights", "weights")
# safetensors metadata keys that name a parent model.
_META_KEY = re.compile(r"base|parent|finetuned_from|pretrained|name_or_path|source_model|model_id", re.I)


@dataclass(frozen=True)
class Claim:
    """`kind`: 'fine-tuned from', 'loaded from', 'published as' or 'trained from'; `where` says which field."""

    kind: str
    value: str
    where: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(v: Any) -> str | None:
    return v.strip() if isinstance(v, str) and v.strip() not in ("", ".", "None", "none", "null") else None


def _card_claims(folder: Path) -> list[Claim]:
    """`base_model` from the model card's YAML front matter (huggingface_hub parses it)."""
    from huggingface_hub.repocard import metadata_load

    card = folder / "README.md"
    if not card.is_file():
        return []
    try:
        meta = metadata_load(card) or {}
    except Exception:  # noqa: BLE001 - a card with broken YAML claims nothing we can read
        return []
    bases = meta.get("base_model")
    relation = _text(meta.get("base_model_relation")) or "fine-tuned"
    kind = "fine-tuned from" if relation in ("finetune", "fine-tuned") else f"{relation} from"
    return [Claim(kind, v, "model card base_model") for v in (bases if isinstance(bases, list) else [bases])
            if _text(v)]


def claims_of(ckpt: Checkpoint) -> list[Claim]:
    """Every lineage claim in the checkpoint's metadata and model card, in the order above (duplicates kept
    once)."""
    meta = ckpt.metadata
    claims: list[Claim] = []
    config = meta.get("config")
    if isinstance(config, Mapping) and (v := _text(config.get("_name_or_path"))):
        claims.append(Claim("loaded from", v, "config.json _name_or_path"))
    path = Path(ckpt.source)
    if not ckpt.source.startswith(("timm:", "upload:")) and path.is_dir():
        claims += _card_claims(path)
    cfg = meta.get("pretrained_cfg")
    if isinstance(cfg, Mapping) and meta.get("pretrained") is not False:  # timm at init carries its default cfg
        hub = _text(cfg.get("hf_hub_id"))
        arch = _text(cfg.get("architecture")) or _text(meta.get("timm_model"))
        tag = _text(cfg.get("tag"))
        if hub:
            claims.append(Claim("published as", hub, "timm pretrained_cfg hf_hub_id"))
        elif arch and tag:
            claims.append(Claim("published as", f"{arch}.{tag}", "timm pretrained_cfg architecture and tag"))
    st_meta = meta.get("safetensors_metadata")
    if isinstance(st_meta, Mapping):
        for k, v in st_meta.items():
            if _META_KEY.search(str(k)) and (v := _text(v)) and not v.startswith(("{", "[")):
                claims.append(Claim("fine-tuned from", v, f"safetensors metadata {k}"))
    args = meta.get("args")
    if isinstance(args, Mapping):
        for key in _ARG_KEYS:
            if v := _text(args.get(key)):
                claims.append(Claim("trained from", v, f"training args {key}"))
        if args.get("pretrained") is True and (model := _text(args.get("model"))):
            claims.append(Claim("fine-tuned from", model, "training args pretrained=True, model"))
    return list(dict.fromkeys(claims))


def normalize(name: str) -> str:
    """A name reduced to what two spellings of one model share: lower case, no scheme, revision or suffix."""
    s = name.strip().lower().replace("\\", "/")
    s = re.sub(r"^(hf[-_]hub:|timm:|hf://|https?://huggingface\.co/)", "", s)
    s = re.sub(r"@[^/]*", "", s).rstrip("/")
    for suffix in sorted((*CHECKPOINT_SUFFIXES, ".pth.tar"), key=len, reverse=True):
        s = s.removesuffix(suffix)
    return s.removesuffix("/model")


def names_match(claim: str, alias: str) -> bool:
    """Whether a claimed name and a library name denote the same model: equal after `normalize`, the same
    repository name (the last path part), or one repository name inside the other when it is specific
    enough (8+ characters: 'dinov2-small' in 'dinov2-small-hf', never 'vit' in everything)."""
    a, b = normalize(claim), normalize(alias)
    if not a or not b:
        return False
    if a == b:
        return True
    la, lb = a.rsplit("/", 1)[-1], b.rsplit("/", 1)[-1]
    if la == lb:
        return True
    short, long = sorted((la, lb), key=len)
    return len(short) >= 8 and short in long


def aliases(name: str, source: str) -> list[str]:
    """The names a library entry goes by: its listed name, its path, and the Hub repository it was cached from."""
    out = [name, source]
    m = re.match(r"([^/@]+/[^/@]+)@", name)  # 'org/repo@main/...' (the Hugging Face cache's entries)
    if m:
        out.append(m.group(1))
    parts = Path(source).parts
    if "snapshots" in parts:  # .../models--org--repo/snapshots/<hash>/...
        repo = next((p for p in parts if p.startswith("models--")), None)
        if repo:
            out.append(repo.removeprefix("models--").replace("--", "/"))
    return list(dict.fromkeys(out))


def matching(claim: Claim, library: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    """Library names (of `(name, aliases)` pairs) that the claim names."""
    return [name for name, names in library if any(names_match(claim.value, a) for a in names)]


_SAYS = {"fine-tuned from": "claims to be fine-tuned from", "loaded from": "says it was loaded from",
         "published as": "claims to be the published", "trained from": "says it was trained from"}


@dataclass
class ClaimCheck:
    """A claim beside what the weights show. `status`: 'confirmed', 'related' (related, but not as claimed),
    'contradicted', or 'not in library' (nothing to check it against)."""

    claim: Claim
    status: str
    library: list[str]  # the library entries the claim names
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim.to_dict(), "status": self.status, "library": list(self.library),
                "message": self.message}


def check_claims(claims: Sequence[Claim], relations: Sequence[Any],
                 library: Sequence[tuple[str, Sequence[str]]]) -> list[ClaimCheck]:
    """Each claim against the relations found (objects with `name`, `relation`, `ancestor`), in plain words."""
    by_name = {r.name: r for r in relations}
    ancestors = [r.name for r in relations if r.relation == "derived_from" and r.ancestor == "it"]
    identical = [r.name for r in relations if r.relation == "identical"]
    origin = ancestors or identical
    found = (f"; its weights descend from {', '.join(ancestors)}" if ancestors else
             f"; its weights are identical to {', '.join(identical)}" if identical else "")
    out = []
    for c in claims:
        says = f"{_SAYS.get(c.kind, 'claims')} {c.value} ({c.where})"
        named = matching(c, library)
        rels = [by_name[n] for n in named if n in by_name]
        if not named:
            out.append(ClaimCheck(c, "not in library", [], f"{says}; {c.value} is not in the library, so the "
                                                           f"weights can neither confirm nor refute it{found}"))
        elif confirmed := [r.name for r in rels if r.relation == "identical" or
                           (r.relation == "derived_from" and r.ancestor == "it")]:
            how = "are identical to" if by_name[confirmed[0]].relation == "identical" else "descend from"
            out.append(ClaimCheck(c, "confirmed", named, f"{says}: confirmed, its weights {how} {confirmed[0]}"))
        elif related := [r for r in rels if r.relation in ("sibling", "derived_from")]:
            r = related[0]
            how = ("share an ancestor with it, but the weights do not show which descends from which"
                   if r.relation == "sibling" else f"are the ancestor of {r.name}, not its descendant")
            out.append(ClaimCheck(c, "related", named, f"{says}; its weights {how}"))
        else:
            why = "are unrelated to" if any(r.relation == "unrelated" for r in rels) else "could not be compared with"
            out.append(ClaimCheck(c, "contradicted", named,
                                  f"{says}; its weights {why} {named[0]}" + (found.replace("; its weights", "; they")
                                                                             if origin else "")))
    return out
