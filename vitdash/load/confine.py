"""Which server paths a shared dashboard may open: only those under its configured roots.

On a laptop the person typing a path owns the machine, so any path goes. On a shared server ("shared mode":
sign-in on, or $VITDASH_ALLOWED_ROOTS set) a typed path could name another team's models, ~/.ssh or /etc, and
even a refusal that says "does not exist" tells the visitor what is there. So in shared mode a path is
resolved first (symlinks followed, `..` folded) and accepted only when the result lies under a root (the
roots resolved the same way, so a root that is itself a symlink still works); a folder is accepted only when
no symlink inside it leads out. Everything else gets the same sentence, `REFUSED`, whether it exists or not.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from vitdash.errors import VitdashError
from vitdash.load.library import model_dirs, user_library_dir

ROOTS_ENV = "VITDASH_ALLOWED_ROOTS"
REFUSED = ("This dashboard only opens files and folders under its model folders and library; "
           "pick the checkpoint from the Library, or ask the dashboard's owner to add its folder.")


def env_roots() -> list[Path]:
    """$VITDASH_ALLOWED_ROOTS: extra roots, os.pathsep-separated (setting it turns shared mode on)."""
    return [Path(p.strip()).expanduser() for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]


def shared_mode(signed_in_required: bool) -> bool:
    """Whether typed server paths are confined: sign-in is on, or the server names its roots."""
    return signed_in_required or bool(env_roots())


def server_roots(configured: str | Sequence[str] | None = None) -> list[Path]:
    """The folders a shared dashboard may open: $VITDASH_ALLOWED_ROOTS, the model folders, the library."""
    return list(dict.fromkeys([*env_roots(), *model_dirs(configured), user_library_dir()]))


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def _inside(real: Path, roots: Iterable[Path]) -> bool:
    return any(real == r or real.is_relative_to(r) for r in roots)


def confine(path: str | os.PathLike, roots: Iterable[str | os.PathLike]) -> Path:
    """`path` resolved, when it and everything it holds lie under one of `roots`; else VitdashError(REFUSED).

    The resolved path is what the caller should open: a symlink inside a root that leads out is refused, and
    one that stays inside is followed here once, not again later. A folder is walked (without following its
    symlinked subfolders) and refused when any symlink in it resolves outside the roots, since the readers
    open config files, shards and epoch folders by name inside it.
    """
    real_roots = [_real(r) for r in roots]
    text = str(path).strip()
    if not text or "\x00" in text:
        raise VitdashError(REFUSED)
    try:
        real = _real(text)
        if not _inside(real, real_roots):
            raise VitdashError(REFUSED)
        if real.is_dir():
            for here, dirs, files in os.walk(real, onerror=lambda e: None):
                for name in (*dirs, *files):
                    link = Path(here) / name
                    if link.is_symlink() and not _inside(_real(link), real_roots):
                        raise VitdashError(REFUSED)
    except (OSError, ValueError):  # an unreadable component, a loop: the same answer as "not allowed"
        raise VitdashError(REFUSED) from None
    return real
