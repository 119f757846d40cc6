"""Eight colleagues at once against ONE server process: peak resident memory against the budget, every job done
or refused clearly, nobody seeing anyone else's result.

Eight checkpoints are built here at initialization with timm (ViT-S/16 and ViT-B/16, each with its own seed, so
no two share content or a cache entry) and saved as safetensors in a temporary model folder. One
`streamlit run app.py` serves them in shared mode (VITDASH_ALLOWED_ROOTS: only that folder opens) with a memory
budget (VITDASH_MEMORY_MB) and a number of job slots (VITDASH_MAX_JOBS). Eight browser contexts of one headless
Chromium (Playwright), each its own session, open a different checkpoint through "Path on server" at the same
moment, go to "Does it perform?" and press Run on the shared ImageNet sample (the built-in digits without it),
limited to a few images. The server's resident size (VmRSS of its process, every 50 ms) is compared with the
budget it was given; the baseline is the same server's resident size before the first session arrived.

Each session must end with its own checkpoint's accuracy (its name in the result's JSON, its own top-1) or a
refusal that says why; a session that saw "in line" waited for a slot.

Run: `OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_sessions.py [--budget-mb MB] [--jobs 2] [--images 16]`
(without --budget-mb the server keeps its default budget, half the machine).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from vitdash.common.memory import memory_budget

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "images" / "imagenet-sample"
CHROMIUM = os.environ.get("VITDASH_CHROMIUM", "/usr/bin/chromium")
MODELS = ["vit_small_patch16_224", "vit_base_patch16_224"] * 4


def _build_checkpoints(folder: Path) -> list[Path]:
    """Eight different timm inits (seeded), saved as the files people would point the dashboard at."""
    import timm
    import torch
    from safetensors.torch import save_file

    paths = []
    for i, name in enumerate(MODELS):
        torch.manual_seed(100 + i)
        model = timm.create_model(name, pretrained=False)
        path = folder / f"{i}-{name}.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        paths.append(path)
        del model
    return paths


def _memory(pid: int) -> dict[str, int]:
    """VmRSS and its parts: RssAnon (heap, tensors) and RssFile (pages of mapped checkpoint files, which the
    kernel may drop and read again)."""
    with open(f"/proc/{pid}/status") as f:
        return {k: int(v.split()[0]) * 1024 for k, v in (x.split(":", 1) for x in f)
                if k in ("VmRSS", "RssAnon", "RssFile")}


def _rss(pid: int) -> int:
    return _memory(pid)["VmRSS"]


class Sampler(threading.Thread):
    """The server's resident size every `interval` seconds: its peak, and its parts at that peak."""

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak, self.done = pid, interval, 0, threading.Event()
        self.at_peak: dict[str, float] = {}
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                now = _memory(self.pid)
            except OSError:
                return
            if now["VmRSS"] > self.peak:
                self.peak, self.at_peak = now["VmRSS"], {**now, "t": time.monotonic() - self.t0}
            time.sleep(self.interval)


async def _session(browser, base: str, path: Path, data: str, images: int, timeout_s: float) -> dict:
    """One colleague: open `path`, run the accuracy check, read what the page says."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(timeout_s * 1000)  # eight pages load at once on a busy machine
    page = await context.new_page()
    out = {"checkpoint": path.name, "waited": False}
    start = time.monotonic()
    try:
        await page.goto(base)
        sidebar = page.get_by_test_id("stSidebar")
        await sidebar.get_by_text("Path on server", exact=True).click()
        await sidebar.get_by_role("textbox", name="File or folder path").fill(str(path))
        await sidebar.get_by_role("textbox", name="File or folder path").press("Enter")
        await sidebar.get_by_role("button", name="Open", exact=True).click()
        await sidebar.get_by_text(path.name).first.wait_for(timeout=timeout_s * 1000)
        await page.get_by_test_id("stSidebarNav").get_by_role("link", name="Does it perform?").click()
        main = page.get_by_test_id("stMain")
        await main.get_by_role("textbox", name="Data").fill(data)
        await main.get_by_role("textbox", name="Data").press("Enter")
        await main.get_by_text("Engine").click()
        limit = main.get_by_role("spinbutton", name="Limit images (0 = all)")
        await limit.fill(str(images))
        await limit.press("Enter")
        await page.wait_for_timeout(500)
        await main.get_by_role("button", name="Run", exact=True).click()
        refusal = main.get_by_text(re.compile(r"needs about|The server is busy|^Stopped: "))
        done = main.get_by_text("chance top-1").or_(refusal)
        out["opened_s"] = round(time.monotonic() - start, 1)
        deadline = time.monotonic() + timeout_s
        while not await done.count():
            if await main.get_by_text(re.compile(r"in line for")).count():
                out["waited"] = True
            elif out["waited"] and "started_s" not in out:
                out["started_s"] = round(time.monotonic() - start, 1)  # out of the line: the job runs
            if time.monotonic() > deadline:
                raise TimeoutError(f"no result after {timeout_s:.0f} s")
            await page.wait_for_timeout(250)
        if await main.get_by_text("chance top-1").count():
            await main.get_by_text("Preprocessing used and full result (JSON)").click()
            shown = await main.get_by_test_id("stJson").inner_text()
            out["status"] = "completed"
            out["result_checkpoint"] = re.search(r'"checkpoint"\s*:\s*"([^"]+)"', shown).group(1)
            top1 = page.get_by_test_id("stMetric").filter(has_text="Top-1").first
            out["top1"] = (await top1.get_by_test_id("stMetricValue").inner_text()).strip()
        else:
            out["status"] = "refused"
            out["reason"] = (await refusal.first.inner_text()).strip()
    except Exception as e:  # noqa: BLE001 - a failed session is a result of the benchmark, reported below
        out["status"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    out["seconds"] = round(time.monotonic() - start, 1)
    await context.close()
    return out


async def _sessions(base: str, paths: list[Path], data: str, images: int, timeout_s: float) -> list[dict]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                                                          "--disable-dev-shm-usage"])
        results = await asyncio.gather(*(_session(browser, base, path, data, images, timeout_s) for path in paths))
        await browser.close()
    return list(results)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-mb", type=float, default=None,
                        help="VITDASH_MEMORY_MB for the server (default: unset, the server's own default, half the "
                             "machine)")
    parser.add_argument("--jobs", type=int, default=2, help="VITDASH_MAX_JOBS for the server")
    parser.add_argument("--images", type=int, default=16, help="images per accuracy check")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds a session may take")
    args = parser.parse_args()
    data = str(SAMPLE) if SAMPLE.is_dir() else "digits"
    with tempfile.TemporaryDirectory(prefix="vitdash-sessions-") as tmp:
        tmp = Path(tmp)
        models = tmp / "models"
        models.mkdir()
        paths = _build_checkpoints(models)
        port = _free_port()
        env = dict(os.environ, VITDASH_MAX_JOBS=str(args.jobs),
                   VITDASH_ALLOWED_ROOTS=str(models), VITDASH_MODEL_DIRS=str(models),
                   VITDASH_HISTORY_DB=str(tmp / "history.sqlite"), VITDASH_LIBRARY_DIR=str(tmp / "library"),
                   VITDASH_CACHE_DIR=str(tmp / "cache"), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
        env.pop("VITDASH_MEMORY_MB", None)
        if args.budget_mb:
            env["VITDASH_MEMORY_MB"] = str(args.budget_mb)
        log = open(tmp / "server.log", "w")  # noqa: SIM115 - open for the server's whole life
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                                   "--server.port", str(port), "--server.address", "127.0.0.1",
                                   "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(180):
                try:
                    urllib.request.urlopen(f"{base}/_stcore/health", timeout=2)
                    break
                except OSError:
                    time.sleep(0.5)
            baseline = _rss(server.pid)
            sampler = Sampler(server.pid)
            sampler.start()
            start = time.monotonic()
            results = asyncio.run(_sessions(base, paths, data, args.images, args.timeout))
            wall = time.monotonic() - start
            sampler.done.set()
            sampler.join()
        finally:
            server.terminate()
            server.wait(30)
            log.close()
        budget = int(args.budget_mb * (1 << 20)) if args.budget_mb else memory_budget()  # what the server computes
        print(f"8 sessions, one server: {len(set(MODELS))} architectures ({', '.join(sorted(set(MODELS)))}), "
              f"{args.images} images each from {data}, VITDASH_MAX_JOBS={args.jobs}, {wall:.0f} s in all")
        for r in results:
            extra = (f"top-1 {r['top1']}, result names {r['result_checkpoint']}" if r["status"] == "completed"
                     else r.get("reason", ""))
            waited = f", waited in line until {r['started_s']} s" if r["waited"] and "started_s" in r else (
                ", waited in line" if r["waited"] else "")
            print(f"  {r['checkpoint']:34s} {r['status']:10s} checkpoint open at {r.get('opened_s', '-')} s{waited}, "
                  f"done at {r['seconds']:.1f} s  {extra}")
        own = all(r.get("result_checkpoint") == Path(r["checkpoint"]).name for r in results
                  if r["status"] == "completed")
        completed = sum(r["status"] == "completed" for r in results)
        refused = sum(r["status"] == "refused" for r in results)
        print(f"RESULT completed {completed}, refused with a reason {refused}, lost {8 - completed - refused}; "
              f"each session saw only its own checkpoint's result: {own}")
        print(f"RESULT server RSS: baseline {baseline / 2**20:,.0f} MB, peak {sampler.peak / 2**20:,.0f} MB, budget "
              f"{budget / 2**20:,.0f} MB -> peak/budget = {sampler.peak / budget:.2f} "
              f"({'UNDER' if sampler.peak < budget else 'OVER'} the budget); at the peak "
              f"{sampler.at_peak.get('RssAnon', 0) / 2**20:,.0f} MB anonymous + "
              f"{sampler.at_peak.get('RssFile', 0) / 2**20:,.0f} MB of mapped files, {sampler.at_peak.get('t', 0):.0f} s in")
        print(json.dumps({"baseline": baseline, "peak": sampler.peak, "budget": budget, "sessions": results}))


if __name__ == "__main__":
    main()
