"""Does it perform? Own-head accuracy or a few-shot probe on labeled images, with throughput.

Cancel: clicking any widget while the script runs makes Streamlit stop that run at its next UI update (here
the progress bar, after the current batch) and start a new one. The Cancel button's `on_click` runs first in
that new run and, since the interrupted run left `benchmark_running` set, sets `benchmark_cancel`, so the page
reports the cancellation instead of a result. The library loop also polls the flag (`should_stop`) before every
batch, which ends the loop itself wherever the run is not interrupted.
"""
from __future__ import annotations

import streamlit as st

from ui.state import PERFORM_DATA_KEY, PERFORM_RESULT_KEY, current_checkpoint
from vitdash.common.results import Progress
from vitdash.data.datasets import suggested_data
from vitdash.data.samples import sample_dir
from vitdash.errors import VitdashError
from vitdash.figures import perform as F
from vitdash.identity.preprocessing import INTERPOLATIONS, resolve_preprocessing
from vitdash.perform.engine import EngineOptions
from vitdash.perform.evaluate import EvalResult, evaluate
from vitdash.perform.fewshot import DEFAULT_SHOTS, fewshot

CANCEL, RESULT, RUNNING = "benchmark_cancel", PERFORM_RESULT_KEY, "benchmark_running"
MODES = ("Own-head accuracy", "Few-shot probe (frozen features vs random twin)")


def _cancel() -> None:
    st.session_state[CANCEL] = bool(st.session_state.get(RUNNING))


def _start() -> None:
    st.session_state[CANCEL] = False
    st.session_state.pop(RESULT, None)


def _follow_default(key: str, default) -> None:
    """A widget value that follows the checkpoint's default (another checkpoint picked in the sidebar brings its
    own) until the user changes it: 'digits' must not stay in the Data field of an RGB ImageNet model."""
    mark = f"{key}_default"
    if key not in st.session_state or st.session_state[key] == st.session_state.get(mark):
        st.session_state[key] = default
    st.session_state[mark] = default


def _floats(text: str, what: str) -> list[float] | None:
    if not text.strip():
        return None
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise VitdashError(f"{what}: give numbers separated by commas, e.g. 0.5, 0.5, 0.5") from None


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "..."
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


st.title("Does it perform?")
ckpt = current_checkpoint()
if not ckpt.canonical:
    st.warning("This checkpoint was not recognized as a ViT layout, so it cannot be run: see the Overview page.")
    st.stop()
try:
    from vitdash.identity.architecture import infer_architecture

    arch = infer_architecture(ckpt)
    own = resolve_preprocessing(ckpt, arch)
except VitdashError as e:
    st.error(str(e))
    st.stop()

default_data = suggested_data(arch.in_chans, sample_dir())
_follow_default(PERFORM_DATA_KEY, default_data)
_follow_default("benchmark_mode", MODES[0 if arch.num_classes else 1])
left, right = st.columns([3, 2])
with left:
    data = st.text_input("Data", key=PERFORM_DATA_KEY,
                         help="A folder with one subfolder per class (WordNet synset ids or your own names), a flat "
                              "folder whose file names start with the synset id, or 'digits' (scikit-learn's 8x8 "
                              "digits, built in).")
    mode = st.radio("Check", MODES, key="benchmark_mode", horizontal=True,
                    help="A head that cannot score the data (no head, in21k, another task) needs the probe.")
with right:
    st.markdown(f"**{ckpt.name}**  \n{arch.num_classes or 'no'} head outputs · {arch.in_chans} channel(s) · "
                f"native {arch.img_size[0]}x{arch.img_size[1]} px")

with st.expander(f"Preprocessing (from {own.source})", expanded=False):
    st.caption("What the checkpoint declares, resolved by timm's `resolve_data_config`; "
               "change a value to override it.")
    for note in own.notes:
        st.caption(note)
    c1, c2, c3 = st.columns(3)
    size = c1.number_input("Input size (px)", min_value=arch.patch_size, max_value=max(1024, own.input_size[1]),
                           step=arch.patch_size, value=int(own.input_size[1]), key="benchmark_img_size")
    crop = c2.number_input("crop_pct", min_value=0.1, max_value=1.5, value=float(own.crop_pct), step=0.025,
                           format="%.3f", key="benchmark_crop_pct")
    interp = c3.selectbox("Interpolation", INTERPOLATIONS, index=INTERPOLATIONS.index(own.interpolation),
                          key="benchmark_interp")
    m1, m2 = st.columns(2)
    mean_text = m1.text_input("mean", value=", ".join(map(str, own.mean)), key="benchmark_mean")
    std_text = m2.text_input("std", value=", ".join(map(str, own.std)), key="benchmark_std")

with st.expander("Engine", expanded=False):
    e1, e2, e3, e4 = st.columns(4)
    device = e1.selectbox("Device", ("auto", "cpu", "cuda"), key="benchmark_device")
    precision = e2.selectbox("Precision", ("auto", "fp32", "bf16", "fp16"), key="benchmark_precision",
                             help="auto: bf16 autocast on CUDA, fp32 on CPU")
    batch = e3.number_input("Batch size", min_value=1, max_value=4096, value=64, key="benchmark_batch")
    limit = e4.number_input("Limit images (0 = all)", min_value=0, value=0, step=50, key="benchmark_limit")
    compile_ = st.checkbox("torch.compile the model", key="benchmark_compile")

if mode == MODES[1]:
    f1, f2, f3 = st.columns(3)
    shots = f1.multiselect("Shots per class", DEFAULT_SHOTS, default=list(DEFAULT_SHOTS[:3]), key="benchmark_shots")
    splits = f2.number_input("Random splits", min_value=1, max_value=50, value=5, key="benchmark_splits")
    coarse = f3.checkbox("Group ImageNet classes into coarse WordNet categories", key="benchmark_coarse",
                         value=data.strip() == default_data and default_data != "digits",
                         help="For data with one image per ImageNet class, such as the shared sample.")

run_col, cancel_col = st.columns([1, 5])
run = run_col.button("Run", type="primary", key="benchmark_run", on_click=_start)
cancel_col.button("Cancel", key="benchmark_cancel_button", on_click=_cancel)

if st.session_state.get(CANCEL) and not run:
    st.warning("Cancelled: the run was stopped before it finished.")
    st.session_state[CANCEL] = st.session_state[RUNNING] = False

if run:
    bar = st.progress(0.0, text="Starting...")

    def show(p: Progress) -> None:
        rate = p.done / p.elapsed_s if p.elapsed_s else 0.0
        bar.progress(p.fraction, text=f"{p.done}/{p.total} images · {rate:.1f} images/s · ETA {_fmt_s(p.eta_s)}"
                                      + (f" · {p.skipped} skipped" if p.skipped else ""))

    try:
        overrides = {"img_size": None if size == own.input_size[1] else int(size),
                     "crop_pct": None if crop == own.crop_pct else float(crop),
                     "interpolation": None if interp == own.interpolation else interp}
        mean, std = _floats(mean_text, "mean"), _floats(std_text, "std")
        if mean and tuple(mean) != own.mean:
            overrides["mean"] = mean
        if std and tuple(std) != own.std:
            overrides["std"] = std
        opts = EngineOptions(device=device, batch_size=int(batch), precision=precision, compile=compile_,
                             limit=int(limit) or None)
        stop = lambda: bool(st.session_state.get(CANCEL))  # noqa: E731
        st.session_state[RUNNING] = True  # left set if Streamlit interrupts the run (see the module docstring)
        if mode == MODES[0]:
            result = evaluate(ckpt, data.strip(), opts, overrides, progress=show, should_stop=stop)
        else:
            result = fewshot(ckpt, data.strip(), shots=sorted(shots), n_splits=int(splits), coarse=coarse,
                             options=opts, overrides=overrides, progress=show, should_stop=stop)
        st.session_state[RESULT] = (ckpt.sha256, result)
    except VitdashError as e:
        st.error(str(e))
    st.session_state[RUNNING] = False
    bar.empty()

sha, result = st.session_state.get(RESULT, (None, None))
if result is not None and sha == ckpt.sha256:
    for w in result.warnings:
        st.warning(w)
    if isinstance(result, EvalResult):
        c = st.columns(5)
        lo, hi = result.top1_ci95
        c[0].metric("Top-1", f"{result.top1:.2%}", help=f"95% interval {lo:.1%} to {hi:.1%}")
        c[1].metric(f"Top-{result.top5_k}", f"{result.top5:.2%}")
        c[2].metric("Published top-1", "unknown" if result.reference_top1 is None else f"{result.reference_top1:.1%}")
        c[3].metric("Images", result.n_images, help=f"{result.n_skipped} skipped")
        c[4].metric("Images/s", f"{result.images_per_s:.1f}",
                    help=f"end to end; model only: {result.model_images_per_s or 0:.1f}")
        st.caption(f"Labels: {result.label_mapping['method']} · {result.n_classes} classes, "
                   f"{result.num_outputs} head outputs · chance top-1 {result.chance_top1:.2%}")
        a, b = st.columns(2)
        a.plotly_chart(F.accuracy_figure(result), key="benchmark_accuracy")
        b.plotly_chart(F.throughput_figure(result), key="benchmark_throughput")
        st.plotly_chart(F.per_class_figure(result), key="benchmark_per_class")
        confusion = F.confusion_figure(result)
        if confusion is not None:
            st.plotly_chart(confusion, key="benchmark_confusion")
        else:
            st.caption(f"No confusion matrix above {result.n_classes} > 50 classes.")
    else:
        st.caption(f"{result.n_classes} classes, {result.n_images} images ({result.n_skipped} skipped), "
                   f"features of width {result.feature_dim}; probe: {result.probe}")
        if result.results:
            st.plotly_chart(F.fewshot_figure(result), key="benchmark_fewshot")
            st.dataframe([{"shots": s.shots, "checkpoint": f"{s.accuracy_mean:.1%} ± {s.accuracy_std:.1%}",
                           "random twin": (f"{s.random_init_accuracy_mean:.1%}"
                                           if s.random_init_accuracy_mean is not None else "-"),
                           "test images": s.n_test} for s in result.results], hide_index=True)
        if result.skipped_shots:
            st.caption(f"Shot counts the data does not allow: {result.skipped_shots}")
    if result.n_skipped:
        with st.expander(f"{result.n_skipped} skipped files"):
            st.write(result.skipped)
    with st.expander("Preprocessing used and full result (JSON)"):
        st.json(result.to_dict(), expanded=1)
