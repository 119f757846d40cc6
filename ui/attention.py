"""The "Where does it look?" page's overlays: one picture per image with its colour bar, outlier patches treated
and marked, the notes and top-5 beside it, and a PNG of all of them that carries the file names and settings."""
from __future__ import annotations

import streamlit as st

from vitdash.attention import overlay as O
from vitdash.attention.explain import AttentionResult
from vitdash.errors import VitdashError
from vitdash.figures.attention import top5_figure
from vitdash.identity.architecture import infer_architecture
from vitdash.load.checkpoint import Checkpoint
from vitdash.perform.domain import sample_domain

Shown = tuple[str, "str | None", AttentionResult]  # (image name, known class, result)


def domain_note(ckpt: Checkpoint, chosen: list) -> None:
    """Say so when the built-in digits shown to a grayscale model are not what it was trained on."""
    if any(key.startswith("digits:") for _, key, _, _ in chosen):
        found = sample_domain(ckpt, infer_architecture(ckpt), "digits")
        if found.mismatch:
            st.caption(f"The built-in digits are {found.short}: upload its own images for maps that mean something.")


def overlay_grid(results: list[Shown], at: tuple, title: str, ckpt_name: str, *, colormap: str, opacity: float,
                 clip: float, artifacts: str) -> None:
    """Three pictures a row; `at` is (layer, head) for raw attention, (None, None) for the rollout."""
    exported = []
    for start in range(0, len(results), 3):
        for col, (name, label, result) in zip(st.columns(3), results[start:start + 3]):
            with col:
                values, words = result.shown(*at), result.describe(*at)
                settings = dict(artifacts=artifacts, colormap=colormap, opacity=opacity, clip=clip)
                try:
                    picture, found = result.picture(values, **settings)
                    exported.append(result.picture(values, **settings, caption=[
                        f"{ckpt_name}: {name}" + (f" (true class: {label})" if label else ""),
                        f"{title}: {words}; {colormap}, opacity {opacity:g}, clip {clip:g}, outliers {artifacts}"])[0])
                except VitdashError as e:
                    st.error(f"{name}: {e}")
                    continue
                st.image(picture, caption=f"{name}" + (f" (true class: {label})" if label else "") + f" - {words}")
                if found.found:
                    st.warning(f"{found.describe()}. Marked with white boxes; "
                               + {"saturate": "the colour range is set by the other patches.",
                                  "leave out": "left out of the map.", "show": "shown as they are."}[artifacts],
                               icon=":material/center_focus_strong:")
                for note in result.notes(*at):
                    st.caption(note)
                if result.top5:
                    st.plotly_chart(top5_figure(result.top5), key=f"top5_{start}_{name}")
    if exported:
        st.download_button("Download PNG (with file names and settings)", O.to_png(O.side_by_side(exported)),
                           file_name=f"{ckpt_name}-attention.png", mime="image/png", key="attn_download")
