"""Where checkpoints come from: a path (file or folder), uploaded bytes, a timm name, the Hugging Face Hub.

Every source ends in `_finish`, which maps the layout and fills in hash, size and warnings, so a
checkpoint from anywhere is described the same way.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from vitdash.errors import VitdashError
from vitdash.load.checkpoint import Checkpoint, TensorStore
from vitdash.load.files import (
    CHECKPOINT_SUFFIXES,
    METADATA_FILES,
    SHARD_INDEXES,
    WEIGHT_FILES,
    ZOO_EPOCH_PREFIX,
    is_checkpoint_file,
    zoo_epochs,
)
from vitdash.load.formats import read_file, safetensors_reader
from vitdash.load.formats.raw import RawCheckpoint, sha256_files
from vitdash.load.formats.torch_pickle import from_object
from vitdash.load.layouts import detect
from vitdash.load.layouts.timm_layout import PATCH_KEYS, timm_class
from vitdash.load.looks_like import looks_like


def load(source: str | os.PathLike) -> Checkpoint:
    """A path to a checkpoint file or folder, `timm:<name>`, or `hf-hub:<org>/<repo>`."""
    text = str(source)
    if text.startswith("timm:"):
        name, _, tag = text[5:].partition("@")
        return load_timm(name, pretrained=tag == "pretrained")
    if text.startswith("hf-hub:"):
        return load_hub(text[7:])
    path = Path(source).expanduser()
    if not path.exists():
        raise VitdashError(f"{path} does not exist")
    raw = read_dir(path) if path.is_dir() else read_file(path)
    return _finish(raw, source=str(path), name=path.name)


def load_bytes(data: bytes, filename: str) -> Checkpoint:
    """An upload: written to a private temporary file (readers need a path), read, then unlinked.

    Safetensors and mmap'd torch tensors stay readable after the unlink (POSIX keeps the inode).
    """
    safe_name = re.sub(r"[^\w.\-]", "_", Path(filename).name) or "upload.bin"
    folder = Path(tempfile.mkdtemp(prefix="vitdash-upload-"))
    path = folder / safe_name  # the user's file name, so messages name the file they uploaded
    try:
        path.write_bytes(data)
        ckpt = _finish(read_file(path), source=f"upload:{filename}", name=filename)
        ckpt.sha256  # hash and scan now: the temporary file is about to go
        return ckpt
    finally:
        path.unlink(missing_ok=True)
        folder.rmdir()


def checkpoint_from_state_dict(sd: dict[str, torch.Tensor], source: str = "memory",
                               metadata: dict[str, Any] | None = None, name: str = "") -> Checkpoint:
    """Wrap tensors already in memory (tests, demo training, comparisons) with full layout mapping."""

    raw = from_object(sd)
    raw.format = "memory"
    raw.metadata.update(metadata or {})
    return _finish(raw, source=source, name=name or source)


def load_timm(name: str, pretrained: bool = False, **kwargs: Any) -> Checkpoint:
    """A timm model by name: at initialization offline, or with its published weights when online."""
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name.split(".")[0], timm.list_models(), n=5, cutoff=0.8)
        raise VitdashError(f"timm has no model named {name!r}" + (f"; close names: {', '.join(close)}" if close else ""))
    if pretrained:
        with _hub_errors(f"timm weights for {name}") as offline:
            # Offline, timm gets the file from the local cache: it has no per-call offline switch itself.
            overlay = {"file": str(_cached_timm_weights(name))} if offline else None
            model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    else:  # seeded, so the same architecture at init always reads the same (and the process RNG is untouched)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = timm.create_model(name, pretrained=False, **kwargs)
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    patch_embed = getattr(model, "patch_embed", None)
    if patch_embed is not None and getattr(patch_embed, "img_size", None):
        cfg["input_size"] = (model.in_chans if hasattr(model, "in_chans") else 3, *patch_embed.img_size)
    attn = getattr(getattr(model, "blocks", [None])[0], "attn", None)
    meta = {"pretrained_cfg": cfg, "timm_model": name, "pretrained": pretrained}
    if attn is not None:
        meta["num_heads"] = attn.num_heads
    state = "pretrained" if pretrained else "init"
    return checkpoint_from_state_dict(sd, source=f"timm:{name}@{state}", metadata=meta, name=f"{name} ({state})")


def load_hub(repo_id: str, revision: str | None = None) -> Checkpoint:
    """Download (or reuse from the local cache) a Hub repository's weights and configs."""
    from huggingface_hub import snapshot_download

    with _hub_errors(f"Hugging Face Hub repository {repo_id}") as offline:
        folder = snapshot_download(
            repo_id, revision=revision, local_files_only=offline,
            allow_patterns=["*.json", "*.safetensors", "pytorch_model*.bin", "*.npz"])
    return load(folder)


def _cached_timm_weights(name: str) -> Path:
    """A timm model's published weights from the local caches (the Hub's, then torch hub's), the way
    timm would look for them: safetensors first, then its .bin, then the file behind its URL."""
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None:
        raise VitdashError(f"timm has no published weights for {name}")
    if cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        for filename in dict.fromkeys(("model.safetensors", cfg.hf_hub_filename or "pytorch_model.bin")):
            found = try_to_load_from_cache(repo, filename, revision=revision or None)
            if isinstance(found, str):  # (else None, or a marker that the file is known not to exist)
                return Path(found)
    if cfg.url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)
        if cached.is_file():
            return cached
    raise FileNotFoundError(f"no copy of {name}'s weights in the local caches")


def _hub_reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """Whether the Hub answers at all within `timeout` (DNS included: the probe runs in a thread we stop
    waiting for). Any HTTP status counts as an answer."""
    import threading
    import urllib.error
    import urllib.request

    answered: list[bool] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
            answered.append(True)
        except urllib.error.HTTPError:
            answered.append(True)
        except Exception:  # noqa: BLE001 - refused, DNS failure, timeout: all mean "not reachable"
            answered.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(answered and answered[0])


@contextmanager
def _hub_errors(what: str) -> Iterator[bool]:
    """Yields whether the call must stay offline, and turns any download failure (offline, 404, gated)
    into one clear sentence, within seconds.

    huggingface_hub retries an unreachable host with backoff (about a minute per file) and waits on a
    server that accepts connections but never answers; a short probe decides first, and when the Hub does
    not answer (or HF_HUB_OFFLINE is set) the caller asks for cached files only, call by call: nothing
    process-wide changes, so other sessions' downloads are not affected.
    """
    from huggingface_hub import constants

    offline = constants.HF_HUB_OFFLINE or not _hub_reachable(constants.ENDPOINT)
    try:
        yield offline
    except VitdashError:
        raise
    except Exception as exc:
        if not (isinstance(exc, (OSError, RuntimeError, ValueError, ConnectionError))
                or "huggingface_hub" in type(exc).__module__):
            raise
        if offline:
            why = "the Hub is unreachable and no copy is in the local cache"
        else:
            why = f"the Hub request failed ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})"
        raise VitdashError(
            f"could not get {what}: {why}. Without network access, load the checkpoint from a file or folder "
            "on disk, or use a timm architecture at initialization.") from None


# ---- folders -------------------------------------------------------------------------------------------------


def read_dir(path: Path) -> RawCheckpoint:
    """Hugging Face folders (single or sharded), ViT Model Zoo folders, or a folder with one checkpoint."""
    metadata = folder_metadata(path)
    for index_name in SHARD_INDEXES:
        if (path / index_name).exists():
            raw = _read_sharded(path / index_name)
            break
    else:
        weights = _pick_weight_file(path)
        raw = read_file(weights)
        if weights.parent != path:
            raw.wrappers.insert(0, str(weights.relative_to(path).parent))
    raw.metadata = {**metadata, **raw.metadata}
    if "result.json" in os.listdir(path) or any(p.name.startswith(ZOO_EPOCH_PREFIX) for p in path.iterdir()):
        raw.metadata["folder_layout"] = "model_zoo"
    return raw


def folder_metadata(path: Path) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for name in METADATA_FILES:
        f = path / name
        if f.is_file() and f.stat().st_size < 50 << 20:
            key = name.removesuffix(".json")
            meta[key] = _read_json_or_lines(f)
    config = meta.get("config")
    if isinstance(config, dict) and isinstance(config.get("id2label"), dict):
        meta["id2label"] = config["id2label"]
    if isinstance(config, dict) and "pretrained_cfg" in config:
        meta["pretrained_cfg"] = config["pretrained_cfg"]  # timm's own Hub config.json
    return meta


def _read_json_or_lines(f: Path) -> Any:
    """`result.json` from Ray Tune is JSON lines (one record per epoch); others are plain JSON."""
    text = f.read_text(errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        records = []
        for line in text.splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records


def _pick_weight_file(path: Path) -> Path:
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    zoo = zoo_epochs(path)
    if zoo:
        return zoo[-1]  # the last epoch
    candidates = [p for p in path.iterdir() if p.is_file() and is_checkpoint_file(p.name)]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise VitdashError(f"{path} holds no checkpoint file (looked for {', '.join(WEIGHT_FILES)}, "
                           f"{ZOO_EPOCH_PREFIX}*/checkpoints, or a single {'/'.join(CHECKPOINT_SUFFIXES)} file)")
    raise VitdashError(f"{path} holds several checkpoint files ({', '.join(p.name for p in candidates[:6])}): "
                       "pick one")


def _read_sharded(index: Path) -> RawCheckpoint:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError) as e:
        raise VitdashError(f"{index.name}: not a valid shard index ({e})") from None
    loaders, infos, files, fmt = {}, {}, [], ""
    for shard in sorted(set(weight_map.values())):
        raw = read_file(index.parent / shard)
        fmt = raw.format
        files += raw.files
        for k in raw.tensors:
            loaders[k] = raw.tensors.loader(k)
            infos[k] = raw.tensors.info(k)
    missing = set(weight_map) - set(loaders)
    if missing:
        raise VitdashError(f"{index.name} lists {len(missing)} tensors that no shard holds (e.g. {sorted(missing)[0]})")
    return RawCheckpoint(TensorStore(loaders, infos), fmt, {"shards": len(files)}, files=files)


# ---- common finish -------------------------------------------------------------------------------------------


def _integrity(raw: RawCheckpoint) -> Callable[[], tuple[str, list[str]]]:
    """(sha256, tensors holding NaN/Inf), deferred to the first read of `Checkpoint.sha256`/`warnings`."""

    def run() -> tuple[str, list[str]]:
        if raw.format == "safetensors" and raw.files:  # plain reads: bounded memory for any size
            return sha256_files(raw.files), [n for f in raw.files for n in safetensors_reader.nonfinite(f)]
        h = hashlib.sha256()
        bad = []
        for name in raw.tensors:
            t = raw.tensors[name]
            if not raw.files:
                h.update(name.encode())
                h.update(t.detach().contiguous().cpu().view(-1).view(torch.uint8).numpy().tobytes())
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                bad.append(name)
        return (sha256_files(raw.files) if raw.files else h.hexdigest()), bad

    return run


def _finish(raw: RawCheckpoint, source: str, name: str) -> Checkpoint:
    warnings = list(raw.warnings)
    size = sum(f.stat().st_size for f in raw.files)
    found = detect(raw.tensors, raw.metadata)
    if found is None or not any(k in found.tensors for k in PATCH_KEYS):
        prefixes = Counter(k.split(".")[0] for k in raw.tensors)
        looks = looks_like(raw.tensors)
        warnings.append(
            f"not a ViT: it looks like {looks}. Top-level key prefixes: "
            + ", ".join(f"{p} ({n})" for p, n in prefixes.most_common(8))
            + ". Weight histograms, spectra and the training verdict still work on the raw tensors; the "
              "architecture, accuracy and attention need a recognized ViT.")
        return Checkpoint(tensors=raw.tensors, source=source, format=raw.format, layout="unknown", canonical=False,
                          wrappers=raw.wrappers, metadata=raw.metadata, unmapped_keys=[], load_warnings=warnings,
                          integrity=_integrity(raw), size_bytes=size, name=name, is_vit=False, looks_like=looks,
                          source_tensors=raw.tensors)
    metadata = {**raw.metadata, **found.metadata}
    metadata.setdefault("timm_class", timm_class(set(found.tensors), metadata))  # the class the names are of
    args = metadata.get("args")
    if isinstance(args, dict) and isinstance(args.get("model"), str):
        metadata.setdefault("timm_model", args["model"])  # timm train.py records the model name
    if found.notes:
        metadata["mapping_notes"] = found.notes
    layout = "model_zoo" if raw.metadata.get("folder_layout") == "model_zoo" else found.layout
    unexplained = [k for k in found.unmapped if k not in found.aside]  # the set-aside ones are in the notes
    if unexplained:
        warnings.append(f"{len(unexplained)} tensor(s) not part of the canonical ViT: " + ", ".join(unexplained[:8]))
    if metadata.get("not_in_timm"):
        warnings.append("a ViT, but parts of it have no timm equivalent, so no exact timm model is built (accuracy "
                        "and attention need one): " + "; ".join(metadata["not_in_timm"]))
    return Checkpoint(tensors=found.tensors, source=source, format=raw.format, layout=layout, canonical=True,
                      wrappers=raw.wrappers + found.wrappers, metadata=metadata, unmapped_keys=found.unmapped,
                      unmapped_reasons=found.aside, load_warnings=warnings, integrity=_integrity(raw), size_bytes=size,
                      name=name, is_vit=True, looks_like="ViT", origins=found.origins, source_tensors=raw.tensors,
                      derived=list(found.derived))
