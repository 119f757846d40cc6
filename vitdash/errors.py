"""One exception type for input vitdash refuses: the page shows its message, the CLI exits 2 with it."""


class VitdashError(Exception):
    """A specific, user-facing reason why an input cannot be used (never a bug)."""
