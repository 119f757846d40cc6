"""Any ViT recognized by its structure: the key tree and the shapes, read the way a person reads a state dict.

Tried after the key maps, which know one convention's names exactly. It finds the stack of numbered blocks
whose members share one tensor signature and hold an attention; in a block, the attention projections in any
split (fused qkv, nn.MultiheadAttention's in_proj, separate q/k/v, one Linear per head) and its output
projection, the MLP pair and the norms; outside the stack, the patch embedding (a conv, a Linear on unfolded
patches, or a conv followed by a Linear), class/distillation/register tokens, the position table, the norms
before and after the stack, and the head(s). Everything is mapped to timm's VisionTransformer names.

What the weights cannot show (where the norms sit, the activation, a table computed in code and never saved)
is taken from the convention the names follow and said in the notes; metadata settles it when present
(`block`: 'pre_norm' | 'post_ln', `hidden_act`, `layer_norm_eps`). Parts timm's VisionTransformer cannot
compute are listed in `metadata['not_in_timm']`, so nothing downstream claims an exact model for them.
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field

import torch

from vitdash.load.buffers import is_sincos
from vitdash.load.checkpoint import TensorStore
from vitdash.load.layouts.canon import Canon

NAME = "structure"

_INDEXED = re.compile(r"^(.*?)(\d+)$")
_W = ("weight", "gamma", "g", "scale")
_B = ("bias", "beta", "b", "shift")
# Module names, matched against the last non-numeric segment of a module's path (case-insensitive).
_QKV = re.compile(r"(qkv|to_qkv|qkv_?proj(ection)?|c_attn|w_?qkv|qkv_linear|attn_qkv|query_key_value|w)")
_ROLE = {
    "q": re.compile(r"(q|query|queries|to_q|q_?proj|q_lin(ear)?|linear_q|w_?q|q_mappings?|proj_q|query_proj|q_layer)"),
    "k": re.compile(r"(k|key|keys|to_k|k_?proj|k_lin(ear)?|linear_k|w_?k|k_mappings?|proj_k|key_proj|k_layer)"),
    "v": re.compile(r"(v|value|values|to_v|v_?proj|v_lin(ear)?|linear_v|w_?v|v_mappings?|proj_v|value_proj|v_layer)"),
}
_KV = re.compile(r"(kv|to_kv|kv_?proj|w_?kv)")
_OUT = re.compile(r"(out|out_?proj(ection)?|proj|o|o_proj|w_?o|w_concat|output_projection|dense|c_proj|fc_out|"
                  r"to_out|wo|projection|out_linear)")
_PATCH = re.compile(r"(patch|emb|proj|mapper|project|token|conv)", re.I)
_HEAD = re.compile(r"(head|classifier|cls|fc|linear|logits|out|mlp)", re.I)
_NOT_VISION = re.compile(r"(decoder|text|lm_head|word|vocab)", re.I)
_PRE_STACK = re.compile(r"(^|[._])(pre|ln_pre|norm_pre|pre_?norm|pre_layrnorm|pre_layernorm)([._]|$)", re.I)
_TOKEN_NAMES = (("dist", re.compile(r"dist", re.I)), ("reg", re.compile(r"reg(ister)?", re.I)),
                ("mask", re.compile(r"mask", re.I)), ("cls", re.compile(r"(cls|class)", re.I)))
_POS = re.compile(r"(pos|position|^pe$|\.pe$|positional)", re.I)
_GENERIC_STACK_WORDS = {"blocks", "block", "layers", "layer", "resblocks", "transformer", "encoder", "h", "stack",
                        "stages", "model", "backbone", "net", "body", "trunk", "vit"}


def _natural(path: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def _last_name(path: str) -> str:
    """The last non-numeric segment of a module path (`heads.3.query` -> `query`, `q_mappings.2` -> `q_mappings`)."""
    return next((p for p in reversed(path.split(".")) if not p.isdigit()), "").lower()


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


@dataclass
class _Module:
    """A module's parameters: `params` maps the parameter's own name to the full key."""

    path: str
    params: dict[str, str]

    def get(self, names: tuple[str, ...]) -> str | None:
        return next((self.params[n] for n in names if n in self.params), None)


def _modules(keys: list[str], strip: str = "") -> dict[str, _Module]:
    """Keys grouped by module (the key without its last segment); `strip` is removed from the paths."""
    out: dict[str, _Module] = {}
    for key in keys:
        rel = key[len(strip):] if strip and key.startswith(strip) else key
        path, _, param = rel.rpartition(".")
        out.setdefault(path, _Module(path, {})).params[param] = key
    return out


class _Reader:
    """Shapes and file order of the source tensors."""

    def __init__(self, src: TensorStore):
        self.src = src
        keys = list(src)
        self.order = {k: i for i, k in enumerate(keys)}
        self.ordered = keys != sorted(keys)  # safetensors sorts its keys: then the file keeps no module order

    def shape(self, key: str | None) -> tuple[int, ...]:
        return self.src.shape(key) if key is not None else ()

    def linear(self, m: _Module) -> tuple[int, int] | None:
        w = m.params.get("weight")
        s = self.shape(w)
        return (s[0], s[1]) if len(s) == 2 else None

    def norm(self, m: _Module) -> int | None:
        """Width of a norm-like module (a 1-D gain, optionally a bias of the same width), else None."""
        w = m.get(_W)
        if w is None or len(self.shape(w)) != 1 or any(p not in _W + _B for p in m.params):
            return None
        b = m.get(_B)
        if b is not None and self.shape(b) != self.shape(w):
            return None
        return self.shape(w)[0]

    def first(self, m: _Module) -> int:
        return min(self.order[k] for k in m.params.values())


# ---- the stack of blocks -----------------------------------------------------------------------------------------


@dataclass
class _Stack:
    container: str  # e.g. 'transformer.layers' ('encoder.layers.encoder_layer_' style stems included)
    prefixes: list[str]  # one per block, in index order: 'transformer.layers.0'

    @property
    def depth(self) -> int:
        return len(self.prefixes)

    def keys(self, src: TensorStore, i: int) -> list[str]:
        p = self.prefixes[i] + "."
        return [k for k in src if k.startswith(p)]


def _stacks(r: _Reader) -> list[_Stack]:
    """Numbered containers whose members all hold the same tensor signature (names and shapes)."""
    found: dict[tuple[str, str], dict[int, str]] = defaultdict(dict)
    for key in r.src:
        parts = key.split(".")
        for j, part in enumerate(parts[:-1]):
            m = _INDEXED.match(part)
            if m:
                found[(".".join(parts[:j]), m.group(1))][int(m.group(2))] = ".".join(parts[: j + 1])
                break
    stacks = []
    for (parent, stem), members in found.items():
        idx = sorted(members)
        if idx != list(range(idx[0], idx[0] + len(idx))):
            continue
        stack = _Stack(_join(parent, stem) if stem else parent, [members[i] for i in idx])
        sigs = []
        for i in range(stack.depth):
            n = len(stack.prefixes[i]) + 1
            sigs.append({k[n:]: r.shape(k) for k in stack.keys(r.src, i)})
        if all(s == sigs[0] for s in sigs[1:]) and len(sigs[0]) >= 4:
            stacks.append(stack)
    return stacks


# ---- one block -----------------------------------------------------------------------------------------------------


@dataclass
class _Block:
    """What each tensor of a block is, as relative paths; `qkv` says how the fused projection is formed."""

    dim: int
    attn_dim: int
    qkv: str  # 'fused' | 'mha' | 'separate' | 'per_head' | 'per_head_slices' | 'kv'
    q: list[_Module]  # the projection(s), in order (fused: one; separate: q, k, v; per-head: q heads, k heads, v heads)
    proj: _Module | None
    fc1: _Module
    fc2: _Module
    norms: list[_Module]  # [norm1, norm2] (attention's, MLP's), or fewer
    heads: int | None  # counted from per-head modules
    placement: str  # 'pre_norm' | 'post_ln'
    placement_why: str
    placement_sure: bool
    act: str
    act_why: str
    act_sure: bool
    leftover: list[str] = field(default_factory=list)
    attn_root: str = ""

    @property
    def torch_layer(self) -> bool:
        return self.qkv == "mha" and self.attn_root == "self_attn" and {self.fc1.path, self.fc2.path} == {
            "linear1", "linear2"} and {n.path for n in self.norms} == {"norm1", "norm2"}


def _attention(r: _Reader, mods: dict[str, _Module], width: int | None) -> tuple[str, list[_Module], int, int] | None:
    """(kind, projection modules, residual width, attention width); `width` is the block's norms' width."""
    mha = [m for m in mods.values() if "in_proj_weight" in m.params]
    if len(mha) == 1:
        out, dim = r.shape(mha[0].params["in_proj_weight"])
        return "mha", mha, dim, out // 3
    linears = {p: m for p, m in mods.items() if r.linear(m)}
    fused = [m for p, m in linears.items() if _QKV.fullmatch(_last_name(p)) and r.linear(m)[0] % 3 == 0]
    if len(fused) == 1:
        out, dim = r.linear(fused[0])
        return "fused", fused, dim, out // 3
    by_role = {role: sorted((m for p, m in linears.items() if rx.fullmatch(_last_name(p))),
                            key=lambda m: _natural(m.path)) for role, rx in _ROLE.items()}
    kv = [m for p, m in linears.items() if _KV.fullmatch(_last_name(p))]
    if len(by_role["q"]) == 1 and not by_role["k"] and not by_role["v"] and len(kv) == 1:
        (a, dim), (b, _) = r.linear(by_role["q"][0]), r.linear(kv[0])
        return ("kv", [by_role["q"][0], kv[0]], dim, a) if b == 2 * a else None
    q, k, v = by_role["q"], by_role["k"], by_role["v"]
    if not q or not (len(q) == len(k) == len(v)):
        return None
    shapes = {r.linear(m) for m in q + k + v}
    if len(shapes) != 1:
        return None
    out, din = shapes.pop()
    if len(q) == 1:
        return "separate", [q[0], k[0], v[0]], din, out
    heads = len(q)
    # One Linear per head over the whole token (tintn, the Medium tutorial), or over its own slice of the
    # token (BrianPulfer's q_mappings: a block-diagonal projection), told apart by the norms' width.
    if width is not None and din != width and din * heads == width:
        return "per_head_slices", q + k + v, width, out * heads
    return "per_head", q + k + v, din, out * heads


def _norm_side(path: str) -> str | None:
    """'attn' | 'mlp' from a norm's name, when the name says it."""
    low = path.lower()
    if re.search(r"(attn|attention|before|(^|[._])sa([._]|$)|msa|mha|self)", low):
        return "attn"
    if re.search(r"(ffn|ff|mlp|after|feed|fc)", low):
        return "mlp"
    m = re.search(r"(\d+)$", low)
    if m and m.group(1) in ("1", "2"):
        return "attn" if m.group(1) == "1" else "mlp"
    return None


def _root(paths: list[str]) -> str:
    """The first path segment the given modules share ('' when they share none)."""
    firsts = {p.split(".")[0] for p in paths}
    return firsts.pop() if len(firsts) == 1 else ""


def _block(r: _Reader, keys: list[str], prefix: str, meta: dict, stack_norm: bool) -> _Block | None:
    mods = _modules(keys, prefix + ".")
    widths = [w for m in mods.values() if (w := r.norm(m))]
    found = _attention(r, mods, max(set(widths), key=widths.count) if widths else None)
    if found is None:
        return None
    kind, qmods, dim, attn_dim = found
    used = {m.path for m in qmods}
    attn_paths = [m.path for m in qmods]
    common = qmods[0].path.split(".")
    for m in qmods[1:]:
        parts = m.path.split(".")
        n = 0
        while n < min(len(common), len(parts)) and common[n] == parts[n]:
            n += 1
        common = common[:n]
    attn_parent = ".".join(common if kind != "mha" else qmods[0].path.split("."))
    if kind in ("fused", "separate", "kv") and attn_parent in used:
        attn_parent = attn_parent.rpartition(".")[0]
    # The output projection: a (dim, attn_dim) Linear as close to the attention as possible.
    proj = None
    others = {p: m for p, m in mods.items() if p not in used and r.linear(m) == (dim, attn_dim)}
    scope = attn_parent
    while True:
        near = [m for p, m in others.items() if scope == "" or p.startswith(scope + ".")]
        named = [m for m in near if _OUT.fullmatch(_last_name(m.path))]
        pick = named if len(named) == 1 else near if len(near) == 1 else []
        if pick:
            proj = pick[0]
            break
        if not scope:
            break
        scope = scope.rpartition(".")[0]
    if proj is not None:
        used.add(proj.path)
        attn_paths.append(proj.path)
    rest = [m for p, m in mods.items() if p not in used]
    linears = sorted((m for m in rest if r.linear(m)), key=lambda m: _natural(m.path))
    if len(linears) != 2:
        return None
    a, b = linears
    if r.linear(a)[1] != dim:
        a, b = b, a
    hidden = r.linear(a)[0]
    if r.linear(a) != (hidden, dim) or r.linear(b) != (dim, hidden):
        return None
    used |= {a.path, b.path}
    norms = [m for m in rest if m.path not in used and r.norm(m) == dim]
    used |= {m.path for m in norms}
    leftover = [k for m in mods.values() if m.path not in used for k in m.params.values()]
    # Which norm belongs to which sublayer, and where it sits.
    aroot, mroot = _root(attn_paths), _root([a.path, b.path])
    inside = {}
    for n in norms:
        first = n.path.split(".")[0]
        inside[n.path] = "attn" if first == aroot and aroot else "mlp" if first == mroot and mroot else None
    side = {n.path: inside[n.path] or _norm_side(n.path) for n in norms}
    if len(norms) == 2 and (None in side.values() or len(set(side.values())) == 1):
        ordered = sorted(norms, key=(lambda m: r.first(m)) if r.ordered else (lambda m: _natural(m.path)))
        side = {ordered[0].path: "attn", ordered[1].path: "mlp"}
    norms = sorted(norms, key=lambda n: 0 if side[n.path] == "attn" else 1)
    placement, why, sure = _placement(r, meta, norms, inside, qmods + ([proj] if proj else []), [a, b], stack_norm,
                                      kind, aroot)
    blk = _Block(dim=dim, attn_dim=attn_dim, qkv=kind, q=qmods, proj=proj, fc1=a, fc2=b, norms=norms,
                 heads=len(qmods) // 3 if kind.startswith("per_head") else None, placement=placement,
                 placement_why=why, placement_sure=sure, act="", act_why="", act_sure=False, leftover=leftover,
                 attn_root=aroot)
    blk.act, blk.act_why, blk.act_sure = _activation(meta, blk)
    return blk


def _placement(r: _Reader, meta: dict, norms: list[_Module], inside: dict, attn: list[_Module], mlp: list[_Module],
               stack_norm: bool, kind: str, aroot: str) -> tuple[str, str, bool]:
    """Where the norms sit: (placement, why, whether the file shows it)."""
    hint = meta.get("block")
    if hint in ("pre_norm", "post_ln"):
        return hint, "the checkpoint's metadata says so", True
    if isinstance(meta.get("norm_first"), bool):
        return ("pre_norm" if meta["norm_first"] else "post_ln"), "the checkpoint's metadata (norm_first)", True
    if len(norms) != 2:
        return "pre_norm", "fewer than two norms per block", False
    if any(inside.values()):
        return "pre_norm", "each norm sits inside its sublayer's module, which normalizes its own input", True
    names = " ".join(n.path.lower() for n in norms)
    if "before" in names or "after" in names:
        return "pre_norm", "the norms are named for the sublayer they come before/after", True
    if kind == "mha" and aroot == "self_attn" and {n.path for n in norms} == {"norm1", "norm2"} and {
            m.path for m in mlp} == {"linear1", "linear2"}:
        if stack_norm:
            return ("pre_norm", "nn.TransformerEncoderLayer keys with a final norm on the whole stack (nn."
                    "TransformerEncoder(norm=...)), which only a norm_first=True stack needs", False)
        return "post_ln", "nn.TransformerEncoderLayer keys: PyTorch's default norm_first=False", False
    if not r.ordered:
        return "pre_norm", "the ViT convention (the file does not keep the modules' order)", False
    n1, n2 = norms
    a_first, m_first = min(r.first(m) for m in attn), min(r.first(m) for m in mlp)
    if r.first(n1) < a_first and r.first(n2) < m_first:
        return "pre_norm", "each norm is defined before its sublayer", False
    if min(r.first(n1), r.first(n2)) > max(a_first, m_first):
        return "post_ln", "both norms are defined after both sublayers, as post-norm blocks are written", False
    return "pre_norm", "the ViT convention (each norm is defined right after its sublayer, which tells nothing)", False


def _activation(meta: dict, blk: _Block) -> tuple[str, str, bool]:
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    for value in (meta.get("hidden_act"), meta.get("act"), config.get("hidden_act")):
        if isinstance(value, str) and value:  # (in transformers' or timm's words: the architecture translates it)
            return value, "the checkpoint's metadata says so", True
    if blk.torch_layer:
        if blk.placement == "post_ln":
            return "relu", "nn.TransformerEncoderLayer's default", False
        return ("gelu", "a norm_first=True nn.TransformerEncoderLayer stack is a ViT-style one, where GELU is the rule",
                False)
    if {_last_name(blk.fc1.path), _last_name(blk.fc2.path)} == {"linear1", "linear2"}:
        return ("relu", "the MLP is named like nn.TransformerEncoderLayer's (linear1/linear2), whose default is ReLU",
                False)
    if {_last_name(blk.fc1.path), _last_name(blk.fc2.path)} == {"c_fc", "c_proj"}:
        return "quick_gelu", "OpenAI CLIP's names (c_fc/c_proj), whose MLP uses QuickGELU", False
    return "gelu", "the ViT convention", False


# ---- outside the stack ---------------------------------------------------------------------------------------------


def _patch_geometry(patch_dim: int, meta: dict) -> tuple[int, int] | None:
    """(patch, channels) with patch_dim = patch^2 * channels; 3 and 1 channels never both fit."""
    hinted = meta.get("in_chans")
    for chans in ([hinted] if isinstance(hinted, int) else []) + [3, 1]:
        if patch_dim % chans == 0 and math.isqrt(patch_dim // chans) ** 2 == patch_dim // chans:
            return math.isqrt(patch_dim // chans), chans
    return None


@dataclass
class _Found:
    """The recognized pieces outside the blocks, as source keys."""

    notes: list[str] = field(default_factory=list)
    not_in_timm: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)


def _outside(src: TensorStore, stacks: list[_Stack], stack: _Stack) -> list[str]:
    inside = tuple(p + "." for s in stacks for p in s.prefixes)
    return [k for k in src if not k.startswith(inside)]


def _other_tower(key: str, stacks: list[_Stack], stack: _Stack, scope: str) -> bool:
    """Keys named like another stack's container (MAE's `decoder_*` beside `decoder_blocks`)."""
    first = key[len(scope):].split(".")[0].lower()
    for s in stacks:
        if s is stack:
            continue
        words = set(re.split(r"[_.]", s.container[len(scope):].split(".")[0].lower())) - _GENERIC_STACK_WORDS
        if any(w and w in first for w in words):
            return True
    return bool(_NOT_VISION.search(first))


class _Builder:
    def __init__(self, src: TensorStore, meta: dict, stacks: list[_Stack], stack: _Stack):
        self.src, self.meta, self.stacks, self.stack = src, meta, stacks, stack
        self.r = _Reader(src)
        self.canon = Canon(src)
        self.found = _Found()

    # -- blocks --
    def blocks(self) -> _Block | None:
        parent = self.stack.container.rpartition(".")[0] if "." in self.stack.container else ""
        stack_norm = any(self.r.norm(m) for p, m in _modules([k for k in self.src if k.startswith(
            _join(parent, "norm") + ".")]).items())
        blocks = [_block(self.r, self.stack.keys(self.src, i), self.stack.prefixes[i], self.meta, stack_norm)
                  for i in range(self.stack.depth)]
        if any(b is None for b in blocks):
            return None
        for i, b in enumerate(blocks):
            self._map_block(i, b)
        return blocks[0]

    def _pair(self, dst: str, m: _Module, weight_fn=None, shape=None) -> None:
        w, b = m.get(_W), m.get(_B)
        if weight_fn is None:
            self.canon.rename(f"{dst}.weight", w)
        else:
            self.canon.put(f"{dst}.weight", w, shape, weight_fn)
        if b is not None:
            self.canon.rename(f"{dst}.bias", b)

    def _map_block(self, i: int, b: _Block) -> None:
        c, dst = self.canon, f"blocks.{i}"
        if b.qkv in ("mha",):
            c.rename(f"{dst}.attn.qkv.weight", b.q[0].params["in_proj_weight"])
            if "in_proj_bias" in b.q[0].params:
                c.rename(f"{dst}.attn.qkv.bias", b.q[0].params["in_proj_bias"])
        elif b.qkv == "fused":
            self._pair(f"{dst}.attn.qkv", b.q[0])
        elif b.qkv == "per_head_slices":
            self._block_diagonal(f"{dst}.attn.qkv", b)
        else:  # separate q/k/v, q + kv, or per-head Linears: rows concatenated in timm's (q, k, v) x heads order
            c.concat(f"{dst}.attn.qkv.weight", [m.params["weight"] for m in b.q])
            if all("bias" in m.params for m in b.q):
                c.concat(f"{dst}.attn.qkv.bias", [m.params["bias"] for m in b.q])
        if b.proj is not None:
            self._pair(f"{dst}.attn.proj", b.proj)
        else:  # no output projection: the heads' outputs are concatenated as they are
            c.synthesize(f"{dst}.attn.proj.weight", (b.dim, b.attn_dim), lambda: torch.eye(b.dim, b.attn_dim))
            c.synthesize(f"{dst}.attn.proj.bias", (b.dim,), lambda: torch.zeros(b.dim))
        self._pair(f"{dst}.mlp.fc1", b.fc1)
        self._pair(f"{dst}.mlp.fc2", b.fc2)
        for name, m in zip(("norm1", "norm2"), b.norms):
            self._pair(f"{dst}.{name}", m)
        if b.leftover and i == 0:
            self.found.not_in_timm.append(f"block tensors with no place in a timm block: {', '.join(b.leftover[:4])}")
        if len(b.norms) != 2 and i == 0:
            self.found.not_in_timm.append(f"{len(b.norms)} norm(s) per block where timm's blocks have two (one before "
                                          "the attention, one before the MLP)")

    def _block_diagonal(self, dst: str, b: _Block) -> None:
        heads = b.heads
        hd = b.attn_dim // heads
        groups = [b.q[j * heads:(j + 1) * heads] for j in range(3)]
        weights = [m.params["weight"] for g in groups for m in g]

        def diag(*ws: torch.Tensor) -> torch.Tensor:
            return torch.cat([torch.block_diag(*ws[j * heads:(j + 1) * heads]) for j in range(3)])

        self.canon.put(f"{dst}.weight", weights, (3 * b.attn_dim, b.dim), diag)
        self.canon.derived.add(f"{dst}.weight")
        if all("bias" in m.params for m in b.q):
            self.canon.concat(f"{dst}.bias", [m.params["bias"] for g in groups for m in g])
        if dst.startswith("blocks.0."):
            self.found.notes.append(f"attention: each of the {heads} heads projects only its own {hd} channels "
                                "(block-diagonal q/k/v)")

    # -- patch embedding --
    def patch(self, dim: int, outside: list[str]) -> str | None:
        """Maps the patch embedding; returns its module path (the tower's anchor)."""
        mods = _modules(outside)
        convs = [m for m in mods.values() if len(self.r.shape(m.params.get("weight"))) == 4]
        if len(convs) > 1:
            return None
        if convs:
            conv = convs[0]
            o, chans, kh, kw = self.r.shape(conv.params["weight"])
            if kh != kw:
                return None
            # A Linear(o, dim) right after the conv (named for the patch embedding when o == dim, where it could
            # also be a head) makes one patch embedding with it.
            follow = [m for m in mods.values() if self.r.linear(m) == (dim, o) and not _NOT_VISION.search(m.path)]
            named = [m for m in follow if _PATCH.search(_last_name(m.path)) and not _HEAD.search(_last_name(m.path))]
            pick = named if len(named) == 1 else follow if len(follow) == 1 and o != dim else []
            if not pick:
                if o != dim:
                    return None
                self._pair("patch_embed.proj", conv)
                parent = conv.path.rpartition(".")[0]
                after = [m for m in mods.values() if parent and m.path.rpartition(".")[0] == parent
                         and self.r.norm(m) == dim]
                if len(after) == 1:  # a LayerNorm on the patch tokens (timm's patch_embed.norm)
                    self._pair("patch_embed.norm", after[0])
                return conv.path
            self._compose(conv, pick[0], (dim, chans, kh, kw))
            return conv.path
        linears = [m for m in mods.values() if self.r.linear(m) and self.r.linear(m)[0] == dim
                   and _patch_geometry(self.r.linear(m)[1], self.meta) and not _NOT_VISION.search(m.path)]
        named = [m for m in linears if _PATCH.search(_last_name(m.path) or m.path)]
        wide = [m for m in linears if self.r.linear(m)[1] != dim and not _HEAD.fullmatch(_last_name(m.path))]
        pick = named if len(named) == 1 else wide if len(wide) == 1 else []
        if not pick:
            return None
        lin = pick[0]
        p, chans = _patch_geometry(self.r.linear(lin)[1], self.meta)
        order = "(p1 p2 c)"
        if chans > 1:
            unfold = "unfold" in lin.path.lower() or isinstance(self.meta.get("patch_flatten"), str)
            order = self.meta.get("patch_flatten", "(c p1 p2)") if unfold else "(p1 p2 c)"
            self.found.notes.append(f"patch embedding: the Linear's input order is taken as {order}; the weights "
                                    "cannot show how the patches were flattened")
        fn = ((lambda w: w.reshape(dim, chans, p, p)) if order == "(c p1 p2)" else
              (lambda w: w.reshape(dim, p, p, chans).permute(0, 3, 1, 2).contiguous()))
        self._pair("patch_embed.proj", lin, fn, (dim, chans, p, p))
        self.found.notes.append(f"patch embedding: Linear over flattened {p}x{p}x{chans} patches ({lin.path}), "
                                f"reshaped to a {p}x{p} convolution")
        # LayerNorms beside the Linear: after it, timm's patch norm; before it, on the raw pixels, timm has none.
        parent = lin.path.rpartition(".")[0]
        for m in mods.values():
            if m is lin or not parent or m.path.rpartition(".")[0] != parent or not self.r.norm(m):
                continue
            if _natural(m.path) > _natural(lin.path) and self.r.norm(m) == dim:
                self._pair("patch_embed.norm", m)
            elif _natural(m.path) < _natural(lin.path) and self.r.norm(m) == self.r.linear(lin)[1]:
                self.found.used |= set(m.params.values())
                self.found.not_in_timm.append(f"a LayerNorm on the raw patch pixels ({m.path}) before the patch "
                                              "projection, which timm's ViT does not have")
        return lin.path

    def _compose(self, conv: _Module, lin: _Module, shape: tuple[int, ...]) -> None:
        """A conv to o channels then a Linear(o, dim) is one conv to dim channels (bias: W_lin b_conv + b_lin)."""
        o = self.r.shape(conv.params["weight"])[0]
        self.canon.put("patch_embed.proj.weight", [conv.params["weight"], lin.params["weight"]], shape,
                       lambda wc, wl: torch.einsum("do,ochw->dchw", wl, wc))
        cb, lb = conv.params.get("bias"), lin.params.get("bias")

        def bias(wl: torch.Tensor, *biases: torch.Tensor) -> torch.Tensor:
            it = iter(biases)
            out = wl @ next(it) if cb else torch.zeros(shape[0], dtype=wl.dtype)
            return out + next(it) if lb else out

        if cb or lb:
            self.canon.put("patch_embed.proj.bias", [lin.params["weight"]] + [k for k in (cb, lb) if k], (shape[0],),
                           bias)
        self.canon.derived |= {"patch_embed.proj.weight", "patch_embed.proj.bias"}
        self.found.notes.append(f"patch embedding: the conv {conv.path} ({o} channels) followed by the Linear "
                                f"{lin.path}, composed into one {shape[2]}x{shape[3]} convolution")

    # -- tokens, positions, norms, heads --
    def rest(self, dim: int, block: _Block, scope: str) -> None:
        c, r = self.canon, self.r
        keys = [k for k in _outside(self.src, self.stacks, self.stack) if k.startswith(scope) and k not in c.used
                and k not in self.found.used and not _other_tower(k, self.stacks, self.stack, scope)]
        tokens: dict[str, str] = {}
        pos = None
        for k in keys:
            path, _, last = k.rpartition(".")
            if last in _B or (last in _W and not _POS.search(path.rsplit(".", 1)[-1])):
                continue  # module parameters; an nn.Embedding position table (`pos_embedding.weight`) is kept
            name = last if last not in _W else path.rsplit(".", 1)[-1]
            s = r.shape(k)
            if not s or s[-1] != dim:
                continue
            n = math.prod(s) // dim
            if n == 0:
                self.found.used.add(k)
                self.found.notes.append(f"{k} is empty (shape {tuple(s)}): no class token, the tokens are averaged")
            elif _POS.search(name) and n >= 2:
                pos = pos or k
            else:
                kind = next((t for t, rx in _TOKEN_NAMES if rx.search(name)), None)
                if kind is not None and kind not in tokens and (n == 1 or kind == "reg"):
                    tokens[kind] = k
        for kind, k in tokens.items():
            if kind == "mask":
                self.found.notes.append(f"{k} (used only for masked-image pretraining) is not part of the inference "
                                        "model")
                continue
            n = math.prod(r.shape(k)) // dim
            c.put(f"{kind}_token", k, (1, n, dim), lambda t, n=n: t.reshape(1, n, dim))
        if pos is not None:
            n = math.prod(r.shape(pos)) // dim
            c.put("pos_embed", pos, (1, n, dim), lambda t, n=n: t.reshape(1, n, dim) if t.ndim != 3 or t.shape[1] != 1
                  else t.permute(1, 0, 2).reshape(1, n, dim))
            fixed = is_sincos(self.src[pos])
            c.metadata["pos_embed"] = "fixed" if fixed else "learned"
            if fixed:
                self.found.notes.append(f"position embedding: {pos} is a fixed sin-cos table (computed, not learned)")
        else:
            c.metadata["pos_embed"] = "none"
            self.found.notes.append("no position tensor in the file: the model has no position embedding, or adds a "
                                    "table computed in code that was never saved (e.g. sin-cos); the timm model "
                                    "has none")
        self._norms_and_heads(dim, [k for k in keys if k not in c.used and k not in self.found.used],
                              "cls" in tokens, "dist" in tokens)

    def _norms_and_heads(self, dim: int, keys: list[str], has_cls: bool, has_dist: bool) -> None:
        c, r = self.canon, self.r
        mods = _modules(keys)
        linears = [m for m in mods.values() if r.linear(m) and not _NOT_VISION.search(m.path)]
        heads = sorted((m for m in linears if r.linear(m)[1] == dim), key=lambda m: _natural(m.path))
        pre_logits = None
        for m in heads:  # Linear(dim, R) then Linear(R, classes) in one container: a representation layer
            nxt = [x for x in linears if x is not m and r.linear(x)[1] == r.linear(m)[0]
                   and x.path.rpartition(".")[0] == m.path.rpartition(".")[0] and _natural(m.path) < _natural(x.path)]
            if len(nxt) == 1:
                pre_logits, heads = m, nxt
                break
        if len(heads) > 1:
            named = sorted((m for m in heads if _HEAD.search(_last_name(m.path) or m.path)),
                           key=lambda m: _natural(m.path))
            heads = named or heads
        head = dist_head = None
        if has_dist and len(heads) >= 2:
            dist = [m for m in heads if "dist" in m.path.lower()]
            dist_head = dist[0] if dist else heads[1]
            head = next(m for m in heads if m is not dist_head)
        elif heads:
            head = heads[0]
            if len(heads) > 1:
                self.found.notes.append(f"several Linears from the tokens' width outside the blocks: {head.path} "
                                        f"taken for the head, {', '.join(m.path for m in heads[1:])} left over")
        for dst, m in (("head", head), ("head_dist", dist_head), ("pre_logits.fc", pre_logits)):
            if m is not None:
                self._pair(dst, m)
                if m.get(_B) is None:
                    out = r.linear(m)[0]
                    c.synthesize(f"{dst}.bias", (out,), lambda out=out: torch.zeros(out))
        if pre_logits is not None:
            self.found.notes.append(f"pre-logits: {pre_logits.path} then {head.path}; tanh assumed between them "
                                    "(the representation layer of the original ViT; the weights cannot show it)")
        if head is None:
            proj = [k for k in keys if k.rsplit(".", 1)[-1] in ("proj", "projection", "image_projection")
                    and len(r.shape(k)) == 2 and r.shape(k)[0] == dim]
            if len(proj) == 1:  # OpenAI CLIP: x @ proj, a bare (dim, embed) matrix
                e = r.shape(proj[0])[1]
                c.put("head.weight", proj[0], (e, dim), lambda t: t.t().contiguous())
                c.synthesize("head.bias", (e,), lambda: torch.zeros(e))
                self.found.notes.append(f"head: {proj[0]} applied as x @ {proj[0].rsplit('.', 1)[-1]} (a bias-free "
                                        "projection to the embedding space)")
        # Norms outside the blocks: before the stack (CLIP's ln_pre), inside the head (on the pooled token), final.
        head_parent = head.path.rpartition(".")[0] if head is not None else None
        pre, final, on_pooled = [], [], []
        for m in mods.values():
            if r.norm(m) != dim or m.path in c.used:
                continue
            if _PRE_STACK.search(m.path):
                pre.append(m)
            elif (head_parent and m.path.rpartition(".")[0] == head_parent) or re.search(
                    r"(fc_norm|head_norm|pool_norm|norm_head)", m.path, re.I):
                on_pooled.append(m)
            else:
                final.append(m)
        if len(pre) == 1:
            self._pair("norm_pre", pre[0])
        if not has_cls and on_pooled:
            self._pair("fc_norm", on_pooled[0])
            on_pooled = []
        finals = final + on_pooled
        if finals:
            self._pair("norm", finals[0])
        if len(finals) > 1:
            self.found.not_in_timm.append(f"two norms after the blocks ({', '.join(m.path for m in finals)}); timm's "
                                          "ViT has one")
            c.used |= {k for m in finals[1:] for k in m.params.values()}


def convert(src: TensorStore, meta: dict) -> Canon | None:
    r = _Reader(src)
    stacks = _stacks(r)
    candidates = []
    for stack in stacks:
        b = _block(r, stack.keys(src, 0), stack.prefixes[0], meta, False)
        if b is not None:
            candidates.append((stack, b.dim))
    # A decoder or text tower beside the image encoder is tried last.
    candidates.sort(key=lambda c: bool(_NOT_VISION.search(c[0].container)))
    for stack, dim in candidates:
        builder = _Builder(src, meta, [s for s, _ in candidates], stack)
        outside = [k for k in _outside(src, builder.stacks, stack) if not _other_tower(k, builder.stacks, stack, "")]
        anchor = builder.patch(dim, outside)
        if anchor is None:
            continue
        block = builder.blocks()
        if block is None:
            continue
        builder.rest(dim, block, _scope(anchor, stack, builder.stacks))
        return _finish(builder, block, stack, _scope(anchor, stack, builder.stacks))
    return None


def _scope(anchor: str, stack: _Stack, stacks: list[_Stack]) -> str:
    """The prefix the image tower lives under (CLIP's `visual.`), when another stack lies outside it; else ''."""
    parts = []
    for a, b in zip(anchor.split("."), stack.container.split(".")):
        if a != b:
            break
        parts.append(a)
    scope = ".".join(parts) + "." if parts else ""
    return scope if scope and any(not s.container.startswith(scope) for s in stacks) else ""


def _finish(builder: _Builder, block: _Block, stack: _Stack, scope: str) -> Canon:
    c, found = builder.canon, builder.found
    c.used |= found.used
    meta = builder.meta
    eps = meta.get("layer_norm_eps", meta.get("norm_eps"))
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    eps = eps if isinstance(eps, float) else config.get("layer_norm_eps", 1e-5)
    c.metadata.update(norm_eps=float(eps), block=block.placement, hidden_act=block.act)
    if block.heads:
        c.metadata.update(num_heads=block.heads, num_heads_from="one projection per head in the file")
    qkv_words = {"mha": "nn.MultiheadAttention's in_proj (q, k, v rows)",
                 "fused": f"one fused Linear ({block.q[0].path})",
                 "separate": f"separate q/k/v Linears ({', '.join(m.path for m in block.q)}), concatenated",
                 "kv": f"a q Linear and a fused kv Linear ({', '.join(m.path for m in block.q)}), concatenated",
                 "per_head": f"one q/k/v Linear per head ({block.heads} heads), concatenated in head order",
                 "per_head_slices": f"one q/k/v Linear per head ({block.heads} heads) on its own slice of the token"}
    blocks = f"{stack.depth} block{'s' if stack.depth != 1 else ''}"
    notes = [f"recognized by structure: {blocks} under {stack.container}, width {block.dim}, attention "
             f"width {block.attn_dim} from {qkv_words[block.qkv]}"
             + (", no output projection" if block.proj is None else "")]
    if scope:
        notes.append(f"the ViT is the part under {scope.rstrip('.')}; the rest of the file is left over")
    sure = "" if block.placement_sure else "; the weights cannot show it"
    where = {"pre_norm": "pre-norm, x + f(norm(x))", "post_ln": "post-norm, norm(x + f(x))"}[block.placement]
    notes.append(f"norm placement: {where} ({block.placement_why}{sure})")
    sure = "" if block.act_sure else "; the weights cannot show it"
    notes.append(f"activation: {block.act} ({block.act_why}{sure})")
    if not isinstance(eps, float) or eps == 1e-5 and "layer_norm_eps" not in config and "norm_eps" not in meta:
        notes.append("LayerNorm eps: 1e-5 assumed (PyTorch's default; the weights cannot show it)")
    if "cls_token" in c.infos:
        notes.append("pooling: the class token feeds the head (a model that averages the tokens would look the same)")
    c.notes = notes + found.notes
    if found.not_in_timm:
        c.metadata["not_in_timm"] = found.not_in_timm
    return c
