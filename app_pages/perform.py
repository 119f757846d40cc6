"""Does it perform? Own-head accuracy or a few-shot probe on labeled images, with throughput.

A run is a job in the server's queue (`ui.jobs.run_job`): it may wait for a slot, shows its place in line and a
Cancel button, and stops within seconds when the tab closes or the page is rerun with other inputs.
"""
from __future__ import annotations

import streamlit as st

from ui.jobs import run_job
from ui.perform import preview, show_preview, show_result
from ui.state import PERFORM_DATA_KEY, PERFORM_RESULT_KEY, current_checkpoint, follow_default, or_stop
from vitdash.errors import VitdashError
from vitdash.identity.preprocessing import INTERPOLATIONS, overrides_from, parse_channel_values
from vitdash.perform.engine import EngineOptions
from vitdash.perform.evaluate import evaluate
from vitdash.perform.fewshot import DEFAULT_SHOTS, fewshot
from vitdash.perform.memory import estimate_forward
from vitdash.perform.setup import run_defaults

RESULT = PERFORM_RESULT_KEY
MODES = ("Own-head accuracy", "Few-shot probe (frozen features vs random twin)")


st.title("Does it perform?")
ckpt = current_checkpoint()
if not ckpt.canonical:
    st.warning("This checkpoint was not recognized as a ViT layout, so it cannot be run: see the Overview page.")
    st.stop()
defaults = or_stop(lambda: run_defaults(ckpt))
arch, own = defaults.arch, defaults.preprocessing
follow_default(PERFORM_DATA_KEY, defaults.data)
follow_default("benchmark_mode", MODES[int(defaults.probe)])
left, right = st.columns([3, 2])
with left:
    data = st.text_input("Data", key=PERFORM_DATA_KEY,
                         help="A folder with one subfolder per class (WordNet synset ids or your own names), a flat "
                              "folder whose file names start with the synset id, or 'digits' (scikit-learn's 8x8 "
                              "digits, built in).")
    mode = st.radio("Check", MODES, key="benchmark_mode", horizontal=True,
                    help="A head that cannot score the data (no head, in21k, another task) needs the probe.")
right.markdown(f"**{ckpt.name}**  \n{arch.num_classes or 'no'} head outputs · {arch.in_chans} channel(s) · "
               f"native {arch.img_size[0]}x{arch.img_size[1]} px")

probe = mode == MODES[1]
coarse = st.session_state.get("benchmark_coarse", defaults.coarse(data)) if probe else False
found = preview(ckpt, arch, data, probe=probe, coarse=coarse, limit=st.session_state.get("benchmark_limit") or None)
quick = found.estimate.quick if (probe and found.estimate is not None) else int(own.input_size[1])
follow_default("benchmark_img_size", quick)  # the probe answers in about a minute by default
with st.expander(f"Preprocessing (from {own.source})", expanded=False):
    st.caption("What the checkpoint declares (timm's `resolve_data_config`); change a value to override it.")
    for note in own.notes:
        st.caption(note)
    c1, c2, c3 = st.columns(3)
    size = c1.number_input("Input size (px)", min_value=arch.patch_size, max_value=max(1024, own.input_size[1]),
                           step=arch.patch_size, key="benchmark_img_size")
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

if probe:
    f1, f2, f3 = st.columns(3)
    shots = f1.multiselect("Shots per class", DEFAULT_SHOTS, default=list(DEFAULT_SHOTS[:3]), key="benchmark_shots")
    splits = f2.number_input("Random splits", min_value=1, max_value=50, value=5, key="benchmark_splits")
    coarse = f3.checkbox("Group ImageNet classes into coarse WordNet categories", key="benchmark_coarse",
                         value=coarse, help="For data with one image per ImageNet class, such as the shared sample.")
ran = st.session_state.get("benchmark_run") or st.session_state.get(RESULT, (None,))[0] == ckpt.sha256
show_preview(found, int(size), probe, domain=not ran)  # once a run is shown, its result says it

if st.button("Run", type="primary", key="benchmark_run", on_click=lambda: st.session_state.pop(RESULT, None)):
    bar = st.progress(0.0, text="Starting...")
    show = lambda p: bar.progress(p.fraction, text=p.message)  # noqa: E731
    try:
        overrides = overrides_from(own, img_size=size, crop_pct=crop, interpolation=interp,
                                   mean=parse_channel_values(mean_text, "mean"),
                                   std=parse_channel_values(std_text, "std"))
        opts = EngineOptions(device=device, batch_size=int(batch), precision=precision, compile=compile_,
                             limit=int(limit) or None)

        def work(stop):
            if probe:
                return fewshot(ckpt, data.strip(), shots=sorted(shots), n_splits=int(splits), coarse=coarse,
                               options=opts, overrides=overrides, progress=show, should_stop=stop, arch=arch)
            return evaluate(ckpt, data.strip(), opts, overrides, progress=show, should_stop=stop, arch=arch)

        estimate = estimate_forward(arch, (arch.in_chans, int(size), int(size)), opts, feature_sets=2 * probe)
        result = run_job("fewshot" if probe else "accuracy", estimate, work, label=f"{mode.lower()} of {ckpt.name}")
        if result is not None:
            st.session_state[RESULT] = (ckpt.sha256, result)
    except VitdashError as e:
        st.error(str(e))
    bar.empty()

sha, result = st.session_state.get(RESULT, (None, None))
if result is not None and sha == ckpt.sha256:
    show_result(result)
