"""The benchmark page under AppTest, on a tiny checkpoint saved to disk and the built-in digits."""
from __future__ import annotations

import json

import pytest
import timm
import torch
from apptest_utils import errors, page_test
from safetensors.torch import save_file


@pytest.fixture(scope="module")
def tiny10(tmp_path_factory) -> str:
    """A 10-way tiny ViT at 16 px: digits are upsampled to it, so the whole page runs in seconds."""
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=4, depth=1,
                              embed_dim=32, num_heads=2, num_classes=10)
    path = tmp_path_factory.mktemp("ckpt") / "tiny10.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


def _ready(source: str):
    at = page_test("perform.py", source)
    at.run()
    assert not errors(at), errors(at)
    at.text_input(key="benchmark_data").set_value("digits")
    at.number_input(key="benchmark_limit").set_value(200)
    return at


def test_without_checkpoint_shows_a_hint():
    at = page_test("perform.py")
    at.run()
    assert not errors(at) and at.info


def test_accuracy_run_shows_metrics_and_charts(tiny10):
    at = _ready(tiny10)
    assert at.expander  # preprocessing and engine settings are shown before running
    at.button(key="benchmark_run").click().run()
    assert not errors(at), errors(at)
    labels = [m.label for m in at.metric]
    assert labels[:2] == ["Top-1", "Top-5"] and "Images/s" in labels
    assert [m.value for m in at.metric if m.label == "Images"] == ["200"]
    assert any("guess" in w.value for w in at.warning)  # no class names in the file: folder order is a guess
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any(c["data"][0]["type"] == "heatmap" for c in charts)  # confusion matrix for 10 classes
    _, result = at.session_state["benchmark_result"]
    assert "overrides" not in result.preprocessing["source"]  # untouched widgets override nothing


def test_preprocessing_override_is_used(tiny10):
    at = _ready(tiny10)
    at.number_input(key="benchmark_img_size").set_value(32)
    at.button(key="benchmark_run").click().run()
    assert not errors(at), errors(at)
    _, result = at.session_state["benchmark_result"]
    assert result.preprocessing["input_size"] == [3, 32, 32] and "overrides" in result.preprocessing["source"]


def test_fewshot_run_draws_the_twin(tiny10):
    at = _ready(tiny10)
    at.radio(key="benchmark_mode").set_value("Few-shot probe (frozen features vs random twin)").run()
    at.multiselect(key="benchmark_shots").set_value([1, 5])
    at.number_input(key="benchmark_splits").set_value(2)
    at.button(key="benchmark_run").click().run()
    assert not errors(at), errors(at)
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    names = [t.get("name") for c in charts for t in c["data"]]
    assert "checkpoint" in names and "random-init twin" in names


def test_bad_data_folder_is_a_clear_error(tiny10, tmp_path):
    at = _ready(tiny10)
    at.text_input(key="benchmark_data").set_value(str(tmp_path / "nowhere"))
    at.button(key="benchmark_run").click().run()
    assert not at.exception
    assert any("does not exist" in e.value for e in at.error)


def test_a_run_that_cannot_fit_the_servers_budget_is_refused_with_the_reason(tiny10, monkeypatch):
    from vitdash import jobs

    monkeypatch.setattr(jobs, "_SHARED", jobs.JobQueue(budget=jobs.process_rss() + (1 << 20)))  # 1 MB of room
    at = _ready(tiny10)
    at.button(key="benchmark_run").click().run()
    assert not at.exception and "benchmark_result" not in at.session_state
    [refusal] = [e.value for e in at.error]
    assert refusal.startswith("This accuracy job needs about") and "VITDASH_MEMORY_MB" in refusal


def test_a_run_waits_its_turn_then_runs(tiny10, monkeypatch):
    """One slot, held by another session's job: the page's job waits in line, then runs when it is free."""
    import threading

    from vitdash import jobs

    queue = jobs.JobQueue(budget=1 << 40, max_running=1)
    monkeypatch.setattr(jobs, "_SHARED", queue)
    other = queue.submit("zoo", 0, owner="another-session")
    queue.wait(other)
    waited = []

    def release_when_the_page_waits():
        while queue.stats().waiting == 0:
            threading.Event().wait(0.05)
        waited.append(queue.stats().waiting)
        queue.finish(other)

    helper = threading.Thread(target=release_when_the_page_waits)
    helper.start()
    at = _ready(tiny10)
    at.button(key="benchmark_run").click().run()
    helper.join(timeout=60)
    assert waited == [1] and not errors(at), errors(at)
    assert at.session_state["benchmark_result"][1].n_images == 200
    assert queue.stats().completed == 2 and queue.stats().running == 0


def test_defaults_follow_the_checkpoint_picked_but_a_typed_value_stays(tiny10, tmp_path):
    """Opening an RGB model with no head after the grayscale demo must not leave 'digits' and the own-head check
    selected; a data folder the user typed is theirs and stays."""
    at = page_test("perform.py", "timm:vit_small_patch14_reg4_dinov2")  # 3 channels, no classifier head
    at.session_state["benchmark_data"] = "digits"  # what a 1-channel checkpoint left behind
    at.session_state["benchmark_data_default"] = "digits"
    at.session_state["benchmark_mode"] = "Own-head accuracy"
    at.session_state["benchmark_mode_default"] = "Own-head accuracy"
    at.run()
    assert not errors(at), errors(at)
    from vitdash.data.datasets import suggested_data
    from vitdash.data.samples import sample_dir
    assert at.text_input(key="benchmark_data").value == suggested_data(3, sample_dir())
    assert at.radio(key="benchmark_mode").value.startswith("Few-shot probe")
    at.text_input(key="benchmark_data").set_value(str(tmp_path)).run()
    at.session_state["source"] = tiny10
    at.run()
    assert at.text_input(key="benchmark_data").value == str(tmp_path)
    assert at.radio(key="benchmark_mode").value == "Own-head accuracy"  # tiny10 has a 10-way head


def _domain_warnings(at) -> list[str]:
    return [w.value for w in at.warning if "Not this model's domain" in w.value]


def test_data_off_the_models_domain_is_said_first_before_and_after_the_run(shared_dir):
    """The Fashion-MNIST model on the built-in 8x8 digits: said before Run, and leading the result."""
    at = page_test("perform.py", str(shared_dir / "checkpoints" / "fmnist_vit_custom.pth"), timeout=120).run()
    assert not errors(at), errors(at)
    assert at.text_input(key="benchmark_data").value == "digits"
    [before] = _domain_warnings(at)
    assert "trained on 28x28 grayscale Fashion-MNIST" in before and "the number says nothing about it" in before
    at.number_input(key="benchmark_limit").set_value(60)
    at.button(key="benchmark_run").click().run()
    assert not errors(at), errors(at)
    first = at.warning[0].value  # the run's own warnings follow the domain's, which is said once
    assert first.startswith("**Not this model's domain.** This model was trained on") and len(_domain_warnings(at)) == 1
    _, result = at.session_state["benchmark_result"]
    assert result.off_domain and result.warnings[0] == result.off_domain


def test_fewshot_quick_check_defaults_to_a_resolution_that_answers_in_about_a_minute(shared_dir):
    """DINOv2 at its native 518 px is minutes on a CPU: the probe defaults to the largest size that fits about a
    minute (never below 224 px), and the estimate, timed on one batch, is shown before Run."""
    at = page_test("perform.py", str(shared_dir / "checkpoints" / "dinov2-small-hf"), timeout=240).run()
    assert not errors(at), errors(at)
    assert at.radio(key="benchmark_mode").value.startswith("Few-shot probe")  # no head
    size = at.number_input(key="benchmark_img_size").value
    assert 224 <= size <= 518 and size % 14 == 0
    [estimate] = [c.value for c in at.caption if c.value.startswith("Estimated from 2 images timed at 224 px")]
    assert "at 518 px" in estimate and f"at {size} px" in estimate and "interpolates the position embedding" in \
        estimate or size == 518
