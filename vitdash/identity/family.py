"""The known ViT family (`family.csv`) and where a checkpoint sits in it.

`family.csv` holds one row per published family member: ViT Ti/S/B/L/H/g/G at patch 8/14/16/32, DeiT
(plain and distilled), DeiT III, DINOv2 (with and without registers) and CLIP image towers. `mlp_size` is
the MLP hidden size (3072 for ViT-B), not the width D that the common ViT summary table prints in a
column it calls "MLP size". `params_m` and `gflops` are computed by `vitdash.identity.complexity` from the row
(GFLOPs = GMACs, the timm/fvcore convention) and checked against timm's own models by the tests. `top1`
lists published ImageNet-1k top-1 per weight tag (`tag=value|tag=value`), with `top1_source` citing where
each number was published and `top1_protocol` saying what was measured (a classifier, or a linear probe
on frozen features for DINOv2). `hf_ids` maps Hugging Face repositories to the tag they hold;
`no_embed_class` marks members whose prefix tokens carry no position embedding (DeiT III, registers).
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from vitdash.errors import VitdashError
from vitdash.identity.architecture import ArchSpec, infer_architecture
from vitdash.identity.complexity import Complexity, complexity
from vitdash.identity.family_table import FAMILY_KEYWORDS, TAG_WORDS, load_rows
from vitdash.identity.timm_defs import timm_name
from vitdash.load.checkpoint import Checkpoint

# ArchSpec fields and model arguments a row's `structure` column may set (see row_spec).
STRUCTURE_FIELDS = ("norm_type", "attn_bias", "qk_norm", "mlp_layer", "mlp_norm", "attn_norm", "patch_norm",
                    "patch_bias", "proj_bias", "mlp_bias", "global_pool", "fc_norm", "final_norm", "pool_latent_len",
                    "pool_mlp_hidden", "rel_pos_bias", "block")
STRUCTURE_ARGS = ("rope_type", "pos_embed", "num_kv_heads", "attn_only_layer_scale")


def _coerce(value: str, like: Any) -> Any:
    if isinstance(like, bool):
        return value.strip().lower() in ("1", "true", "yes")
    if isinstance(like, int):
        return int(value)
    if isinstance(like, float):
        return float(value)
    return value


def _arg(value: str) -> Any:
    """A model argument from the table: a number, a flag, a list of numbers ('8 8 4'), or a word."""
    parts = value.split()
    if len(parts) > 1:
        return [int(p) for p in parts]
    if value in ("true", "false"):
        return value == "true"
    try:
        return int(value)
    except ValueError:
        return value


def row_spec(row: dict[str, Any]) -> ArchSpec:
    """The ArchSpec of a family member as timm builds it. The columns hold what tells the members apart; the
    `structure` column lists, as field=value pairs, every ArchSpec field where the member differs from a
    token-pooled LayerNorm ViT with biases (SigLIP's attention pool, AIMv2's RMSNorm...), and `args.X` pairs the
    model arguments that change its parameters (mixed RoPE's learned frequencies)."""
    grid = (row["img_size"] // row["patch"],) * 2  # whole patches: So400m/14 "@384" sees 378 px
    prefix = int(row["class_token"]) + int(row["dist_token"]) + row["reg_tokens"]
    spec = ArchSpec(
        embed_dim=row["width"], depth=row["layers"], num_heads=row["heads"], heads_inferred=False,
        head_candidates=[row["heads"]], head_dim=row["width"] // row["heads"], patch_size=row["patch"],
        img_size=(grid[0] * row["patch"],) * 2, grid_size=grid, in_chans=3, num_prefix_tokens=prefix,
        num_reg_tokens=row["reg_tokens"], has_class_token=row["class_token"], has_dist_token=row["dist_token"],
        no_embed_class=row["no_embed_class"], mlp_hidden=row["mlp_size"], mlp_ratio=row["mlp_size"] / row["width"],
        mlp_type=row["mlp_type"], qkv_bias=True, qk_norm=False, norm_type="layernorm", norm_eps=1e-6,
        layer_scale=row["layer_scale"], global_pool="token", fc_norm=False, pre_norm=row["pre_norm"],
        final_norm=True, patch_bias=not row["pre_norm"], num_classes=row["num_classes"], representation_size=0,
        num_params=round(row["params_m"] * 1e6), timm_class=row["timm_class"], pos_embed=row["pos_embed"],
        mlp_layer="Mlp" if row["mlp_type"] == "mlp" else "GluMlp")
    fields = {k: _coerce(v, getattr(spec, k)) for k, v in row["structure"].items() if not k.startswith("args.")}
    spec = replace(spec, **fields, model_args={k[5:]: _arg(v) for k, v in row["structure"].items()
                                                if k.startswith("args.")})
    spec.qkv_bias = spec.attn_bias != "none"
    return spec


def _position_kind(pos_embed: str) -> str:
    """Absolute, RoPE, relative: learned or fixed, an absolute table is the same structure."""
    kinds = {"fixed": "absolute", "learned": "absolute"}
    return "+".join(sorted({kinds.get(p, p) for p in pos_embed.split("+")}))


def _arch_attributes(arch: ArchSpec) -> dict[str, Any]:
    """What matching compares (structural and soft, below)."""
    return {
        "width": arch.embed_dim, "layers": arch.depth, "heads": arch.num_heads, "mlp_size": arch.mlp_hidden,
        "mlp_type": arch.mlp_type, "patch": arch.patch_size, "in_chans": arch.in_chans,
        "class_token": arch.has_class_token, "dist_token": arch.has_dist_token, "reg_tokens": arch.num_reg_tokens,
        "layer_scale": arch.layer_scale, "pre_norm": arch.pre_norm, "qkv_bias": arch.attn_bias,
        "timm_class": arch.timm_class, "pos_embed": _position_kind(arch.pos_embed), "norm_type": arch.norm_type,
        "learned_rope": arch.model_args.get("rope_type") == "mixed",
        "img_size": arch.img_size, "num_classes": arch.num_classes, "pooling": arch.pooling,
        "representation_size": arch.representation_size,
    }


def _row_attributes(row: dict[str, Any]) -> dict[str, Any]:
    return _arch_attributes(row_spec(row))


# (attribute, words); structural ones make a different network, the rest a changed head or resolution.
STRUCTURAL = (("width", "width"), ("layers", "depth"), ("heads", "heads"), ("mlp_size", "MLP hidden size"),
              ("mlp_type", "MLP type"), ("patch", "patch size"), ("in_chans", "input channels"),
              ("class_token", "class token"), ("dist_token", "distillation token"), ("reg_tokens", "register tokens"),
              ("layer_scale", "LayerScale"), ("pre_norm", "pre-norm (CLIP-style norm_pre)"),
              ("qkv_bias", "q/k/v bias"), ("timm_class", "timm class"), ("pos_embed", "position encoding"),
              ("norm_type", "norm"), ("learned_rope", "learned RoPE frequencies"))


SOFT = (("img_size", "image size"), ("num_classes", "classes in the head"), ("pooling", "pooling"),
        ("representation_size", "pre-logits layer"))


_NUMERIC = ("width", "layers", "heads", "mlp_size", "patch")


def _fmt(key: str, value: Any) -> str:
    if key == "img_size":
        return f"{value[0]}x{value[1]} px"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key == "num_classes" and value == 0:
        return "no head"
    if key == "qkv_bias":
        return {"qkv": "q, k and v", "qv": "q and v (k fixed at 0)", "none": "none"}.get(value, value)
    return str(value)


@dataclass
class FamilyMatch:
    name: str  # the nearest member, e.g. "ViT-B/16 @224"
    family: str
    kind: str  # 'exact' | 'variant' (same network, changed head/resolution) | 'custom'
    exact: bool
    differences: list[str]
    row: dict[str, Any]
    also_matches: list[str] = field(default_factory=list)
    weight_tag: str | None = None
    reference_top1: float | None = None
    notes: list[str] = field(default_factory=list)
    what: str = ""  # the checkpoint in a few words ("128 wide, 6 deep, patch 4 at 32 px"), for custom models

    @property
    def summary(self) -> str:
        if self.kind == "exact":
            same = f" (architecturally identical: {', '.join(self.also_matches)})" if self.also_matches else ""
            return f"exact match: {self.name}{same}"
        if self.kind == "variant":
            return f"{self.name} with a changed head/resolution: " + "; ".join(self.differences)
        return (f"custom ViT: {self.what}; closest known: {self.name} ({len(self.differences)} differences: "
                + "; ".join(self.differences) + ")")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["summary"] = self.summary
        return d


def _differences(arch_attrs: dict[str, Any], row: dict[str, Any], heads_known: bool) -> tuple[list[str], list[str]]:
    row_attrs = _row_attributes(row)
    structural, soft = [], []
    sized = "absolute" in arch_attrs["pos_embed"]  # without a position table no tensor holds an image size
    for keys, out in ((STRUCTURAL, structural), (SOFT, soft)):
        for key, words in keys:
            if (key == "heads" and not heads_known) or (key == "img_size" and not sized):
                continue
            if arch_attrs[key] != row_attrs[key]:
                out.append(f"{words}: {_fmt(key, arch_attrs[key])} here, {_fmt(key, row_attrs[key])} in {row['label']}")
    return structural, soft


def _distance(arch_attrs: dict[str, Any], row: dict[str, Any], heads_known: bool) -> float:
    """How far apart two shapes are: log-ratios of the sizes, plus one per differing yes/no attribute."""
    row_attrs = _row_attributes(row)
    total = 0.0
    for key in _NUMERIC:
        if key == "heads" and not heads_known:
            continue
        total += abs(math.log(arch_attrs[key] / row_attrs[key]))
    total += sum(arch_attrs[k] != row_attrs[k] for k, _ in STRUCTURAL if k not in _NUMERIC)
    total += 0.1 * abs(math.log(arch_attrs["img_size"][0] / row_attrs["img_size"][0]))
    return total


def _tokens(text: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", text.lower()))


def _published(row: dict[str, Any], tag: str) -> bool:
    """Whether the row lists weights under this tag (its published accuracies, its Hub repositories)."""
    return tag in row["top1"] or tag in row["hf_ids"].values()


def _tagged(row: dict[str, Any], tags: str) -> bool:
    """Whether weight tags name the row's family."""
    return TAG_WORDS[row["family"]] in _tokens(tags)


def _preference(row: dict[str, Any], hint: str | None) -> tuple[int, int, int, int]:
    """(a weight tag in the hint is one the row published, the hint names the row's timm model, a tag names its
    family, any word does): timm names one network by several weights (`vit_base_patch16_siglip_224.webli` is
    SigLIP's, `.v2_webli` SigLIP 2's; `vit_base_patch16_224.mae` is MAE's, the same model as ViT-B/16's)."""
    if not hint:
        return 0, 0, 0, 0
    words = hint.split()
    keyword = FAMILY_KEYWORDS[row["family"]]
    tags = [w.split(".", 1)[1] for w in words if "." in w]
    named = row["timm_name"] in {w.split(".")[0] for w in words}
    return (int(any(_published(row, t) for t in tags)), int(named), int(_tagged(row, " ".join(tags))),
            int(keyword in _tokens(hint)))


def match(arch: ArchSpec, hint: str | None = None) -> FamilyMatch:
    """The nearest family member, with every attribute that differs in words.

    `hint` (a timm model name, a Hugging Face model type or repository, a file name) only decides between
    members that are architecturally identical, such as ViT-B/16 and DeiT-B/16.
    """
    heads_known = arch.heads_source in ("config", "weights")
    attrs = _arch_attributes(arch)
    scored = []
    for order, row in enumerate(load_rows()):
        structural, soft = _differences(attrs, row, heads_known)
        scored.append(((len(structural) > 0, _distance(attrs, row, heads_known), len(soft),
                        tuple(-p for p in _preference(row, hint)), order), row, structural, soft))
    scored.sort(key=lambda s: s[0])
    best, row, structural, soft = scored[0]
    kind = "custom" if structural else ("variant" if soft else "exact")
    twins = [r["label"] for key, r, _, _ in scored[1:] if key[:3] == best[:3]]
    notes = []
    if not heads_known:
        notes.append(f"heads were not compared: the checkpoint does not state them ({arch.heads_source})")
    h, w = arch.img_size
    at = f" at {h} px" if h == w else f" at {h}x{w} px"
    what = (f"{arch.embed_dim} wide, {arch.depth} deep, patch {arch.patch_size}"
            + ("" if arch.pos_embed == "none" else at))  # without a position table the image size is not stored
    return FamilyMatch(name=row["label"], family=row["family"], kind=kind, exact=kind == "exact",
                       differences=structural + soft, row=dict(row), also_matches=twins, notes=notes, what=what)


def comparison(arch: ArchSpec, row: dict[str, Any], num_params: int, gflops: float) -> list[dict[str, Any]]:
    """Attribute-by-attribute rows (this checkpoint beside a family member) for a side-by-side table."""
    mine, theirs = _arch_attributes(arch), _row_attributes(row)
    heads = f"{arch.num_heads}" + (f" ({arch.heads_source})" if arch.heads_inferred else "")
    out = []
    for key, words in STRUCTURAL + SOFT:
        out.append({"attribute": words, "this checkpoint": heads if key == "heads" else _fmt(key, mine[key]),
                    row["label"]: _fmt(key, theirs[key]), "differs": mine[key] != theirs[key]})
    out.append({"attribute": "parameters (M)", "this checkpoint": f"{num_params / 1e6:.2f}",
                row["label"]: f"{row['params_m']:.2f}", "differs": abs(num_params / 1e6 - row["params_m"]) > 0.005})
    out.append({"attribute": "GFLOPs", "this checkpoint": f"{gflops:.3g}", row["label"]: f"{row['gflops']:.3g}",
                "differs": abs(gflops - row["gflops"]) > 0.005 * max(gflops, row["gflops"])})
    return out


_HF_CACHE_DIR = re.compile(r"models--([^/\\]+)--([^/\\]+)")


def identify_weights(ckpt: Checkpoint, among: tuple[str, ...] = ()) -> tuple[dict[str, Any], str] | None:
    """(family row, weight tag) when the metadata names published weights; None for anything else. Of the rows
    of the named timm model and the rows labelled in `among` (the members the architecture matches), the one
    that published the tag, then one of `among`, comes first.

    Sources: timm's pretrained_cfg (a timm model loaded with its weights, or timm's Hub config.json), a
    `name.tag` timm model name, and a Hugging Face repository id (config `_name_or_path`, or the Hub cache
    folder the files sit in). A timm model at initialization or a training run's model name is not
    published weights.
    """
    meta = ckpt.metadata
    if meta.get("pretrained") is False:
        return None
    rows = load_rows()
    cfg = meta.get("pretrained_cfg") if isinstance(meta.get("pretrained_cfg"), dict) else {}
    full = meta.get("timm_model") if isinstance(meta.get("timm_model"), str) and meta.get("pretrained") else None
    arch_name, tag = (full.partition(".")[0], full.partition(".")[2]) if full and "." in full else (None, None)
    if cfg.get("tag"):
        arch_name, tag = cfg.get("architecture") or timm_name(meta), cfg["tag"]
    if arch_name and tag:
        named = [r for r in rows if r["timm_name"] == arch_name or r["label"] in among]
        named.sort(key=lambda r: (not _published(r, tag), r["label"] not in among,
                                  not _tagged(r, tag)))
        if named:
            return dict(named[0]), tag
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    repos = [str(config.get("_name_or_path", ""))]
    if found := _HF_CACHE_DIR.search(ckpt.source):
        repos.append(f"{found.group(1)}/{found.group(2)}")
    # A repository may hold the weights of two rows (DINOv3's: timm keeps or drops its all-zero q/v biases).
    for repo in filter(None, repos):
        held = sorted((r for r in rows if repo in r["hf_ids"]), key=lambda r: r["label"] not in among)
        if held:
            return dict(held[0]), held[0]["hf_ids"][repo]
    return None


def _reference(ckpt: Checkpoint, found: FamilyMatch) -> tuple[str | None, float | None]:
    """(weight tag, published top-1) for identified weights that `found` matches exactly."""
    weights = identify_weights(ckpt, among=(found.name, *found.also_matches))
    if weights is None:
        return None, None
    row, tag = weights
    if found.kind != "exact" or row["label"] not in [found.name, *found.also_matches]:
        found.notes.append(f"the metadata names {row['timm_name']}.{tag}, but the architecture differs from "
                           f"{row['label']} (e.g. a replaced head): its published accuracy does not apply")
        return tag, None
    top1 = row["top1"].get(tag)
    if top1 is not None and row["top1_protocol"] != "classifier":
        found.notes.append(f"{row['label']} {tag}: published {top1}% is a {row['top1_protocol']}, not this "
                           "checkpoint's own head")
        return tag, None
    return tag, top1


def reference_top1(ckpt: Checkpoint, arch: ArchSpec | None = None) -> float | None:
    """Published ImageNet-1k top-1 (percent) of these exact weights, when they can be identified; else None.

    Only for identified published weights whose architecture matches their family member exactly and whose
    published number is for the checkpoint's own classifier (not DINOv2's linear probes). A checkpoint that
    is not a recognized ViT has no reference either.
    """
    try:
        arch = arch or infer_architecture(ckpt)
    except VitdashError:
        return None
    return _reference(ckpt, match(arch, hint=_hint(ckpt)))[1]


def _hint(ckpt: Checkpoint) -> str:
    meta = ckpt.metadata
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    cfg = meta.get("pretrained_cfg") if isinstance(meta.get("pretrained_cfg"), dict) else {}
    name = timm_name(meta) or ""
    tagged = f"{name}.{cfg['tag']}" if name and cfg.get("tag") and meta.get("pretrained") is not False else ""
    parts = [name, tagged, str(config.get("model_type", "")), str(config.get("_name_or_path", "")), ckpt.source,
             ckpt.name]
    return " ".join(p for p in parts if p)


@dataclass
class ArchitectureReport:
    """What the Architecture page, the CLI and the report show: spec, cost and place in the family."""

    arch: ArchSpec
    complexity: Complexity
    match: FamilyMatch

    def to_dict(self) -> dict[str, Any]:
        cx = self.complexity.to_dict()
        architecture = self.arch.to_dict() | {
            "gflops": cx["gflops"], "gflops_by_component": cx["gflops_by_component"],
            "params_by_component": cx["params_by_component"], "flops_convention": cx["convention"]}
        architecture["notes"] = architecture["notes"] + cx["notes"]
        return {"architecture": architecture, "family": self.match.to_dict()}


def report(ckpt: Checkpoint) -> ArchitectureReport:
    """Architecture, complexity and family match of a recognized ViT (VitdashError otherwise)."""
    arch = infer_architecture(ckpt)
    found = match(arch, hint=_hint(ckpt))
    found.weight_tag, found.reference_top1 = _reference(ckpt, found)
    return ArchitectureReport(arch=arch, complexity=complexity(ckpt, arch), match=found)


def describe(ckpt: Checkpoint) -> dict[str, Any]:
    """`{'architecture': ..., 'family': ...}` for `vitdash inspect --json`; both None (with the reason) when
    the checkpoint is not a recognized ViT."""
    try:
        return report(ckpt).to_dict()
    except VitdashError as e:
        return {"architecture": None, "family": None, "architecture_error": str(e)}
