"""What is it? The architecture read from the tensors, set beside the nearest member of the ViT family."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from ui.state import current_checkpoint, or_stop
from vitdash.figures.identity import breakdown_figure, family_scatter
from vitdash.common.units import si
from vitdash.identity.complexity import CONVENTION
from vitdash.identity.family import comparison, report
from vitdash.identity.family_table import family_rows

def _fit(frame: pd.DataFrame) -> int:
    """A table's height with every row shown and no empty row after the last (35 px rows, the header, border)."""
    return 35 * (len(frame) + 1) + 3


st.title("What is it?")
ckpt = current_checkpoint()
if not ckpt.is_vit:
    st.warning(f"Not a recognized ViT layout (it looks like {ckpt.looks_like}): there is no architecture to read. "
               "The Overview page lists its tensors.")
    st.stop()
rep = or_stop(lambda: report(ckpt))
arch, cx, found = rep.arch, rep.complexity, rep.match

{"exact": st.success, "variant": st.info, "custom": st.warning}[found.kind](found.summary)

cols = st.columns(7)
cols[0].metric("Width", arch.embed_dim)
cols[1].metric("Depth", arch.depth)
cols[2].metric("Heads", f"{arch.num_heads}{'*' if arch.heads_inferred else ''}",
               help=f"head width {arch.head_dim}; source: {arch.heads_source}")
cols[3].metric("Patch", arch.patch_size)
cols[4].metric("Image", f"{arch.img_size[0]} px" if arch.img_size[0] == arch.img_size[1] else
               f"{arch.img_size[0]}x{arch.img_size[1]}", help="input size the position embedding was made for")
cols[5].metric("Parameters", si(cx.num_params), help=f"{cx.num_params:,}")
cols[6].metric("FLOPs", si(cx.gflops * 1e9), help=f"{cx.gflops:.4g} GFLOPs. {CONVENTION}")
st.caption(arch.structure)
if arch.heads_inferred:
    st.caption(f"\\* heads not stated by any config ({arch.heads_source}); candidates that fit the shapes: "
               f"{', '.join(map(str, arch.head_candidates))}")
for note in arch.notes + cx.notes + found.notes:
    st.info(note)

st.subheader(f"Side by side with {found.name}")
table = pd.DataFrame(comparison(arch, found.row, cx.num_params, cx.gflops))
st.dataframe(table.drop(columns="differs").style.apply(
    lambda col: ["background-color: #ffe08a" if d else "" for d in table["differs"]], axis=0),
    hide_index=True, height=_fit(table), column_config={"attribute": st.column_config.TextColumn(width="medium")})
if found.differences:
    st.markdown("**Differences**\n" + "\n".join(f"- {d}" for d in found.differences))
if found.also_matches:
    st.caption("Architecturally identical: " + ", ".join(found.also_matches))

st.subheader("Published accuracy")
if found.reference_top1 is not None:
    st.metric(f"ImageNet-1k top-1 of {found.row['timm_name']}.{found.weight_tag}", f"{found.reference_top1:.2f}%",
              help=found.row["top1_source"])
elif found.kind == "custom":
    st.caption(f"A custom architecture: the published ImageNet-1k accuracies of its nearest family member "
               f"{found.name} say nothing about this network. Measure it on the 'Does it perform?' page.")
elif found.row["top1"]:
    st.caption(f"These weights are not identified as a published checkpoint; published ImageNet-1k top-1 of "
               f"{found.name} ({found.row['top1_protocol']}; {found.row['top1_source']}):")
    st.dataframe(pd.DataFrame({"weight tag": list(found.row["top1"]), "top-1 (%)": list(found.row["top1"].values())}),
                 hide_index=True)
else:
    st.caption(f"No published ImageNet-1k top-1 for {found.name}.")

rows = family_rows()
st.subheader("Among the family")
st.plotly_chart(family_scatter(rows, cx.num_params / 1e6, cx.gflops, ckpt.name or "this checkpoint",
                               nearest=found.name))
st.subheader("Where parameters and compute go")
st.plotly_chart(breakdown_figure(cx.params, {k: v / 1e9 for k, v in cx.macs.items()}))
st.caption(CONVENTION)

st.subheader("The ViT family")
family = pd.DataFrame([{
    "family": r["family"], "member": r["label"], "layers": r["layers"], "width": r["width"],
    "MLP size": r["mlp_size"], "heads": r["heads"], "patch": r["patch"], "image": r["img_size"],
    "params (M)": r["params_m"], "GFLOPs": r["gflops"], "best top-1": max(r["top1"].values(), default=None),
    "top-1 of": r["top1_protocol"],
    "timm": r["timm_name"], "source": r["source"]} for r in rows])
numbers = {"params (M)": st.column_config.NumberColumn(format="%.2f"),
           "GFLOPs": st.column_config.NumberColumn(format="%.3g"),
           "best top-1": st.column_config.NumberColumn(format="%.1f %%")}


def _family_table(frame: pd.DataFrame, height: int | None = None) -> None:
    st.dataframe(frame.style.apply(lambda row: ["background-color: #ffe08a" if row["member"] == found.name else ""
                                                for _ in row], axis=1),
                 hide_index=True, column_config=numbers, height=height or "auto")


own = family[family["family"] == found.row["family"]]
st.caption(f"The {found.row['family']} members, {found.name} highlighted; all {len(family)} rows below.")
_family_table(own, _fit(own))
with st.expander(f"All {len(family)} members of the ViT family table"):
    _family_table(family)
st.caption("'MLP size' is the MLP hidden size (3072 for ViT-B); the common summary table's column of that name "
           "(768/1024/1280) gives the width D. Parameters and GFLOPs are computed from each row and match timm's "
           "models; top-1 values cite their source per row (family.csv).")
