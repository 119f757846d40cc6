"""Home: what vitdash is, and the four questions answered for the open checkpoint, each card linking to its page."""
from __future__ import annotations

import streamlit as st

from ui.state import PERFORM_RESULT_KEY, current_audit, current_checkpoint
from vitdash.attention.explain import AttentionResult, quick_look
from vitdash.common.units import si
from vitdash.data.samples import look_sample
from vitdash.perform.domain import sample_domain
from vitdash.errors import VitdashError
from vitdash.figures.colors import VERDICT_COLORS
from vitdash.history import AuditHistory, latest_accuracy, off_domain
from vitdash.identity.architecture import infer_architecture
from vitdash.identity.family import report
from vitdash.pipeline import cached_model

CARD_HEIGHT = 350


@st.cache_data(max_entries=16, show_spinner="Computing a rollout...")
def _look(sha256: str, _ckpt) -> tuple[str, AttentionResult] | None:
    arch = infer_architecture(_ckpt)
    ref = look_sample(arch.in_chans)
    if ref is None:
        return None
    domain = sample_domain(_ckpt, arch, ref.origin)
    name = ref.name + (f", not its domain ({domain.model_set or 'another'} model)" if domain.mismatch else "")
    return name, quick_look(_ckpt, ref.load(), cached_model(_ckpt))


def _card(title: str, page: str, link: str):
    box = st.container(border=True, height=CARD_HEIGHT)
    box.markdown(f"#### {title}")
    return box, lambda: box.page_link(page, label=link, icon=":material/arrow_forward:")


st.title("vitdash")
st.markdown("Audits Vision Transformer checkpoints you downloaded but did not train: **is it trained, what is it, "
            "does it perform, where does it look**, read from the weights themselves.")
ckpt = current_checkpoint()
st.caption(f"Open: **{ckpt.name}** ({ckpt.layout} layout, {ckpt.num_params / 1e6:.2f} M parameters). Pick another "
           "checkpoint in the sidebar.")
trained, identity, perform, attention = st.columns(4)

with trained:
    box, link = _card("Is it trained?", "app_pages/trained.py", "The evidence")
    try:
        audit = current_audit(ckpt)
        box.markdown(f"### :{VERDICT_COLORS[audit.verdict]}[{audit.verdict.upper()}]")
        box.write(audit.summary)
    except VitdashError as e:
        box.error(str(e))
    link()

with identity:
    box, link = _card("What is it?", "app_pages/identity.py", "Beside its family")
    if ckpt.is_vit:
        try:
            found = report(ckpt)
            box.markdown({"exact": f"**{found.match.name}**, an exact match",
                          "variant": f"**{found.match.name}**, with its own head or resolution"}.get(
                found.match.kind, f"A custom ViT; nearest family member **{found.match.name}** "
                                  f"({len(found.match.differences)} differences)"))
            box.caption(f"width {found.arch.embed_dim}, depth {found.arch.depth}, {found.arch.patch_size} px patches "
                        f"of a {found.arch.img_size[0]} px image, {si(found.complexity.num_params)} parameters, "
                        f"{si(found.complexity.gflops * 1e9)} FLOPs")
        except VitdashError as e:
            box.error(str(e))
    else:
        box.write(f"Not a recognized ViT layout: it looks like {ckpt.looks_like}.")
    link()

with perform:
    box, link = _card("Does it perform?", "app_pages/perform.py", "Measure it")
    sha, result = st.session_state.get(PERFORM_RESULT_KEY, (None, None))
    try:
        saved = latest_accuracy(AuditHistory().find_by_hash(ckpt.sha256))
    except VitdashError:
        saved = None
    if sha == ckpt.sha256 and getattr(result, "top1", None) is not None:
        box.metric(f"Top-1 on {result.data.get('name')}", f"{result.top1:.1%}", help="measured in this session")
        why = off_domain(result)
    elif saved is not None:
        box.metric(f"Top-1 on {saved.accuracy_data}", f"{saved.top1:.1%}", help=f"saved audit #{saved.id}")
        why = off_domain(saved.accuracy)
    else:
        headless = ckpt.is_vit and not infer_architecture(ckpt).num_classes
        box.write("Not measured yet: " + ("it has no head, so a few-shot probe of its features against a random twin."
                                          if headless else "its own head on labelled images, or a few-shot probe of "
                                                           "its features against a random twin."))
        why = ""
    if why:
        box.warning(why)
    link()

with attention:
    box, link = _card("Where does it look?", "app_pages/attention.py", "Every view")
    if ckpt.canonical:
        try:
            look = _look(ckpt.sha256, ckpt)
            if look is not None:
                picture, _ = look[1].picture(opacity=0.55)
                box.image(picture, caption=f"rollout of {look[0]}", width="stretch")
        except VitdashError as e:
            box.error(str(e))
    else:
        box.write("Attention needs a recognized ViT layout.")
    link()
