"""The model library: every checkpoint vitdash can offer, listed without reading weights.

Sources, in the order they are listed: the built-in demo pair (trained on demand), the configured model
folders ($VITDASH_MODEL_DIRS and/or the app's secrets, passed in by the caller: this module never imports
streamlit), the user's own library folder (where saved uploads go when no shared folder is configured), the
Hugging Face Hub cache and torch hub's checkpoint folder, where timm and torchvision downloads already sit
on users' machines. Listing only walks folders and reads sizes, so it is cheap enough for every rerun.

A saved upload says who saved it and when in a hidden sidecar beside it (`.<file>.vitdash.json`): the
library travels as a plain folder (copied, synced, mounted on another server) and keeps that with it.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vitdash.common.paths import SHARED_DIR
from vitdash.common.results import ProgressFn
from vitdash.errors import VitdashError
from vitdash.load import demo
from vitdash.load.files import CHECKPOINT_SUFFIXES, is_checkpoint_file, is_model_folder
from vitdash.load.formats.raw import sha256_files

ORIGIN_DEMO = "demo"
ORIGIN_FOLDER = "model folder"
ORIGIN_USER = "my library"
ORIGIN_HF = "Hugging Face cache"
ORIGIN_TORCH = "torch hub"


@dataclass(frozen=True)
class LibraryEntry:
    name: str
    source: str  # what `vitdash.load.sources.load` takes (after `prepare` for entries that are not ready)
    kind: str  # 'file', 'folder', 'demo'
    size_bytes: int = 0
    origin: str = ORIGIN_FOLDER
    ready: bool = True  # False: the demo is not trained yet; `prepare` builds it
    note: str = ""
    saved_by: str = ""  # who saved this upload into the library (its sidecar), if anyone did

    @property
    def label(self) -> str:
        """What a picker shows: the model's own name first (a narrow sidebar cuts the end, and two files of one
        folder must still differ), then its folder, where it was found, its size and who saved it."""
        leaf, _, folder = self.name.rstrip("/").rpartition("/")[::-1]
        where = [f"{folder}/" if folder else "", "" if self.origin == ORIGIN_FOLDER else self.origin,
                 _human(self.size_bytes) if self.size_bytes else "", "" if self.ready else "built on first use",
                 f"saved by {self.saved_by}" if self.saved_by else ""]
        return f"{leaf} ({', '.join(w for w in where if w)})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# ---- configured folders ---------------------------------------------------------------------------------------


def _as_paths(value: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[Path]:
    if not value:
        return []
    if isinstance(value, (str, os.PathLike)):
        value = [p for p in str(value).split(os.pathsep) if p.strip()]
    return [Path(str(p).strip()).expanduser() for p in value]


def model_dirs(configured: str | Sequence[str] | None = None) -> list[Path]:
    """$VITDASH_MODEL_DIRS (os.pathsep-separated) plus `configured` (the app's secrets: a list or a path string).

    With neither set, ../shared/checkpoints beside the checkout when present (the developers' test data).
    """
    dirs = _as_paths(os.environ.get("VITDASH_MODEL_DIRS")) + _as_paths(configured)
    if not dirs:
        shared = SHARED_DIR / "checkpoints"
        dirs = [shared] if shared.is_dir() else []
    return list(dict.fromkeys(dirs))


def population_candidates(configured: str | Sequence[str] | None = None) -> list[Path]:
    """Folders that may be audited as a population (the Model zoo page's suggestions): the configured
    model folders and the user's library. Cheap: nothing is scanned (see `holds_population`)."""
    return list(dict.fromkeys([*model_dirs(configured), user_library_dir()]))


def holds_population(folder: Path) -> bool:
    """Whether a folder exists and holds more than one checkpoint (a walk of the whole folder)."""
    return folder.is_dir() and len(scan_folder(folder)) > 1


def user_library_dir() -> Path:
    """The user's own library: $VITDASH_LIBRARY_DIR, else $XDG_DATA_HOME/vitdash/models (~/.local/share)."""
    if os.environ.get("VITDASH_LIBRARY_DIR"):
        return Path(os.environ["VITDASH_LIBRARY_DIR"]).expanduser()
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "vitdash" / "models"


def save_dir(configured: str | Sequence[str] | None = None) -> Path:
    """Where a saved upload goes: the first configured model folder (the team's library), else the user's."""
    explicit = _as_paths(os.environ.get("VITDASH_MODEL_DIRS")) + _as_paths(configured)
    return explicit[0] if explicit else user_library_dir()


# ---- scanning -------------------------------------------------------------------------------------------------


def _size(path: Path) -> int:
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return 0


def scan_folder(root: Path, origin: str = ORIGIN_FOLDER, prefix: str = "") -> list[LibraryEntry]:
    """Checkpoint files and model folders under `root`, recursively (hidden and unreadable folders skipped).

    A model folder (`root` itself included: a Hub snapshot is one) counts as one entry and is not descended
    into; names are `prefix` + the path relative to `root`.
    """
    entries: list[LibraryEntry] = []
    root = Path(root)
    if not root.is_dir():
        return entries
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: None):
        here = Path(dirpath)
        rel = "" if here == root else str(here.relative_to(root))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if is_model_folder(here, filenames, dirnames):
            name = prefix + rel if rel else prefix.rstrip("/") or root.name
            entries.append(LibraryEntry(name, str(here), "folder", _size(here), origin))
            dirnames.clear()
            continue
        for f in sorted(filenames):
            if is_checkpoint_file(f):
                p = here / f
                entries.append(LibraryEntry(prefix + str(p.relative_to(root)), str(p), "file", _size(p), origin,
                                            saved_by=who_saved(p)))
    return entries


def hub_cache_entries(cache_dir: str | os.PathLike | None = None) -> list[LibraryEntry]:
    """Every revision of every model repo in the Hugging Face cache that holds weights (no network)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir)
    except (CacheNotFound, OSError, ValueError):
        return []
    entries: list[LibraryEntry] = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for rev in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
            if not any(is_checkpoint_file(f.file_name) for f in rev.files):
                continue
            tag = ",".join(sorted(rev.refs)) or rev.commit_hash[:8]
            entries += scan_folder(rev.snapshot_path, ORIGIN_HF, prefix=f"{repo.repo_id}@{tag}/")
    return entries


def torch_hub_entries(hub_dir: str | os.PathLike | None = None) -> list[LibraryEntry]:
    """Files in torch hub's checkpoint folder (torchvision and older timm downloads land there)."""
    if hub_dir is None:
        import torch

        hub_dir = torch.hub.get_dir()
    return scan_folder(Path(hub_dir) / "checkpoints", ORIGIN_TORCH)


def demo_entries(cache_dir: str | os.PathLike | None = None) -> list[LibraryEntry]:
    """The demo pair, listed even before it exists: `prepare` trains it on first use."""

    folder = demo.pair_dir(cache_dir=cache_dir)
    ready = demo.find_demo(cache_dir=cache_dir) is not None
    notes = {demo.TRAINED_NAME: "small ViT trained by vitdash on scikit-learn's digits",
             demo.INIT_NAME: "the same ViT at initialization (its untrained twin)"}
    return [LibraryEntry(name, str(folder / name), "demo", _size(folder / name) if ready else 0, ORIGIN_DEMO,
                         ready, notes[name]) for name in (demo.TRAINED_NAME, demo.INIT_NAME)]


def list_library(configured: str | Sequence[str] | None = None, *, demo: bool = True, hub_cache: bool = True,
                 torch_hub: bool = True, demo_cache_dir: str | os.PathLike | None = None,
                 hf_cache_dir: str | os.PathLike | None = None, torch_hub_dir: str | os.PathLike | None = None
                 ) -> list[LibraryEntry]:
    """Every entry of every source, each checkpoint once (a path reached twice is listed where first found).

    The `*_dir` arguments override where each source is looked for (default: where those libraries keep it).
    """
    entries = demo_entries(demo_cache_dir) if demo else []
    for d in model_dirs(configured):
        entries += scan_folder(d, ORIGIN_FOLDER, prefix=f"{d.name}/")
    entries += scan_folder(user_library_dir(), ORIGIN_USER)
    if hub_cache:
        entries += hub_cache_entries(hf_cache_dir)
    if torch_hub:
        entries += torch_hub_entries(torch_hub_dir)
    seen: set[str] = set()
    unique = []
    for e in entries:
        key = os.path.realpath(e.source)
        if key not in seen:
            seen.add(key)
            unique.append(e)
    return unique


def prepare(entry: LibraryEntry, progress: ProgressFn | None = None) -> str:
    """The loadable source of an entry, training the demo pair first when it is not built yet."""
    if entry.kind == "demo" and not Path(entry.source).exists():
        root = Path(entry.source).parents[2]  # <cache root>/demo/<pair>/<model>, as `demo_entries` lists it
        if demo.pair_dir(cache_dir=root) != Path(entry.source).parent:
            raise VitdashError(f"{entry.source} is not where this version of vitdash keeps its demo pair; "
                               "refresh the library")
        demo.ensure_demo(cache_dir=root, progress=progress)
    return entry.source


# ---- saving an upload -----------------------------------------------------------------------------------------


def _safe_filename(filename: str) -> str:
    """The upload's base name, stripped of any path and leading dots, with a suffix the scan recognizes."""
    name = Path(filename.replace("\\", "/")).name.lstrip(".").strip()
    if not name:
        raise VitdashError(f"cannot save an upload named {filename!r}: no usable file name")
    if not name.endswith(CHECKPOINT_SUFFIXES):
        name += ".bin"  # the reader picks the format from the content, not the name
    return name


def _sidecar(path: Path) -> Path:
    return path.with_name(f".{path.name}.vitdash.json")


def who_saved(path: str | os.PathLike) -> str:
    """Who saved this file into the library ('' when nobody recorded it, or the sidecar is unreadable)."""
    try:
        record = json.loads(_sidecar(Path(path)).read_text())
    except (OSError, ValueError):
        return ""
    return str(record.get("saved_by", "")) if isinstance(record, dict) else ""


def _write_atomic(target: Path, data: bytes) -> None:
    """temp file + fsync + rename: readers see the old file or the whole new one, never a partial one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_upload(data: bytes, filename: str, folder: str | os.PathLike | None = None, saved_by: str = "") -> Path:
    """Put an upload into the library folder (atomically: temp file + rename) and return its path.

    Saving the same bytes twice returns the existing file (and keeps who saved it first); a different file
    under a taken name gets the first 8 hex digits of its sha256 appended, so nothing already in the library
    is overwritten. `saved_by` (the signed-in user) goes into the file's sidecar with the time and hash.
    """
    target_dir = Path(folder) if folder is not None else save_dir()
    name = _safe_filename(filename)
    digest = hashlib.sha256(data).hexdigest()
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / name
        if target.exists():
            if sha256_files([target]) == digest:
                return target
            stem, suffix = _split_suffix(name)
            target = target_dir / f"{stem}-{digest[:8]}{suffix}"
            if target.exists() and sha256_files([target]) == digest:
                return target
        _write_atomic(target, data)
        record = {"saved_by": saved_by.strip(), "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "sha256": digest, "uploaded_as": filename}
        _write_atomic(_sidecar(target), json.dumps(record).encode())
    except OSError as e:
        raise VitdashError(f"could not save {name} into the library folder {target_dir}: {e.strerror or e}") from None
    return target


def _split_suffix(name: str) -> tuple[str, str]:
    for suffix in sorted(CHECKPOINT_SUFFIXES + (".pth.tar",), key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


# timm architectures offered at initialization: no download, always available.
TIMM_ARCHITECTURES = (
    "vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224", "vit_base_patch32_224",
    "vit_large_patch16_224", "deit_tiny_patch16_224", "deit_tiny_distilled_patch16_224",
    "deit_small_distilled_patch16_224",
    "vit_small_patch14_dinov2", "vit_small_patch14_reg4_dinov2", "vit_base_patch16_clip_224",
    # the families downloaded most today (timm's Eva, Beit and NaFlexVit classes among them)
    "vit_small_patch16_dinov3", "vit_base_patch16_dinov3", "eva02_tiny_patch14_224", "eva02_base_patch14_224",
    "vit_base_patch16_siglip_224", "vit_so400m_patch14_siglip_224", "naflexvit_base_patch16_siglip",
    "aimv2_large_patch14_224", "beit_base_patch16_224", "beitv2_base_patch16_224", "vit_base_patch16_224.mae",
    "vit_base_patch16_clip_quickgelu_224", "vit_pe_core_small_patch16_384", "vit_small_patch16_rope_224",
    "vit_small_patch16_rope_mixed_224",
)
