"""Audit history: every audit kept in SQLite, so a file seen before is recognized by its content hash.

SQLite is the embedded default (nothing to install, one file, kept across restarts). The database runs
in WAL mode with a busy timeout and every call opens its own connection, so the sessions of one server
(threads) and several servers on one disk (processes) can write at the same time. The path comes from
the argument, else $VITDASH_HISTORY_DB, else $XDG_DATA_HOME/vitdash/history.sqlite (~/.local/share).

Each audit names two people: `reviewer`, who typed their name on the form (what the team calls itself), and
`user`, who was signed in (the identity provider's word, empty on a laptop). Schema 3 added `user`; an older
database gains the column (empty for its old rows) the first time this version opens it.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vitdash.errors import VitdashError

# 2: the untrained model verdict is 'init' (it was 'random'), the word every tensor at its initialization has.
# 3: `user`, who was signed in when the audit was saved.
# 4: the lineage tables: weight fingerprints by content hash (vitdash.population.lineage), and the content hash of
#    each file seen by path, size and modification time, so scanning a library hashes and reads a file once.
SCHEMA_VERSION = 4
_SCHEMA = """
CREATE TABLE IF NOT EXISTS audits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    file_name TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    verdict TEXT,
    confidence REAL,
    family TEXT,
    family_kind TEXT,
    top1 REAL,
    accuracy_data TEXT,
    accuracy TEXT,
    reviewer TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT '',
    details TEXT,
    user TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audits_sha256 ON audits (sha256);
CREATE INDEX IF NOT EXISTS audits_created ON audits (created_at);
CREATE TABLE IF NOT EXISTS fingerprints (
    sha256 TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS file_hashes (
    path TEXT PRIMARY KEY,
    size_bytes INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
"""
CSV_DIGITS = 4  # confidence and top-1 are fractions: 0.9056, not 0.9055555462837219
_MIGRATIONS = {  # columns added since schema 1 -> their definition (old rows take the default)
    "user": "TEXT NOT NULL DEFAULT ''",  # schema 3
}
_TEXT_COLUMNS = ("file_name", "sha256", "source", "family", "note", "reviewer", "user")  # what `text` searches
CSV_COLUMNS = ("id", "created_at", "sha256", "file_name", "size_bytes", "source", "verdict", "confidence", "family",
               "family_kind", "top1", "accuracy_data", "reviewer", "user", "note")


@dataclass
class AuditRecord:
    """One saved audit. `accuracy` holds the accuracy results (top-1/top-k per data set) as measured then."""

    id: int
    created_at: str  # ISO 8601, UTC
    sha256: str
    file_name: str
    size_bytes: int
    source: str = ""
    verdict: str | None = None
    confidence: float | None = None
    family: str | None = None
    family_kind: str | None = None
    top1: float | None = None
    accuracy_data: str | None = None
    accuracy: dict[str, Any] | None = None
    reviewer: str = ""
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    user: str = ""  # who was signed in (empty without sign-in)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for 'already audited' notices."""
        parts = [f"audited {self.created_at.replace('T', ' ').removesuffix('+00:00')} UTC"]
        if self.reviewer or self.user:
            who = self.reviewer or self.user
            parts.append(f"by {who}" + (f" (signed in as {self.user})" if self.reviewer and self.user
                                        and self.user != self.reviewer else ""))
        if self.verdict:
            parts.append(f"verdict {self.verdict}" + (f" ({self.confidence:.0%})" if self.confidence is not None else ""))
        if self.family:  # a custom network only resembles its nearest member; say so rather than claim it is one
            parts.append({"custom": f"custom architecture (nearest family member {self.family})",
                          "variant": f"family {self.family} (variant)"}.get(self.family_kind or "",
                                                                            f"family {self.family}"))
        if self.top1 is not None:
            parts.append(f"top-1 {self.top1:.1%} on {self.accuracy_data or 'data'}"
                         + (" (not the model's domain)" if off_domain(self.accuracy) else ""))
        return ", ".join(parts) + (f'. Note: "{self.note}"' if self.note else "")


def default_path() -> Path:
    if os.environ.get("VITDASH_HISTORY_DB"):
        return Path(os.environ["VITDASH_HISTORY_DB"]).expanduser()
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "vitdash" / "history.sqlite"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


class AuditHistory:
    """The audit table at `path` (created on first use)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path).expanduser() if path is not None else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as con:
                if con.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
                    raise VitdashError(f"{self.path}: SQLite refused WAL mode (a network file system?); "
                                       "set VITDASH_HISTORY_DB to a path on a local disk")
                _migrate(con, self.path)
        except (sqlite3.DatabaseError, OSError) as e:
            raise VitdashError(f"cannot open the audit history at {self.path}: {e}") from None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection per call (sqlite3 connections must not cross threads), committed on exit."""
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout=30000")
            con.execute("PRAGMA synchronous=NORMAL")
            con.row_factory = sqlite3.Row
            yield con
        finally:
            con.close()

    def record(self, *, sha256: str, file_name: str, size_bytes: int, source: str = "", verdict: str | None = None,
               confidence: float | None = None, family: str | None = None, family_kind: str | None = None,
               accuracy: Mapping[str, Any] | None = None, reviewer: str = "", note: str = "",
               details: Mapping[str, Any] | None = None, user: str = "") -> AuditRecord:
        """Save one audit and return it with its id and time.

        `accuracy` is an accuracy result's dict (`EvalResult.to_dict()` or its summary); its top-1 and data
        name are also stored in columns so the list can be filtered and exported without parsing JSON.
        """
        if not sha256:
            raise VitdashError("an audit needs the checkpoint's sha256 (content hash)")
        acc = dict(accuracy) if accuracy else None
        top1 = float(acc["top1"]) if acc and acc.get("top1") is not None else None
        data_name = _data_name(acc)
        row = dict(created_at=_now(), sha256=sha256, file_name=file_name, size_bytes=int(size_bytes or 0),
                   source=source, verdict=verdict, confidence=confidence, family=family, family_kind=family_kind,
                   top1=top1, accuracy_data=data_name, accuracy=_json(acc), reviewer=reviewer.strip(),
                   note=note.strip(), details=_json(dict(details) if details else None), user=user.strip())
        cols = ", ".join(row)
        try:
            with self._connect() as con:
                cur = con.execute(f"INSERT INTO audits ({cols}) VALUES ({', '.join('?' * len(row))})",
                                  tuple(row.values()))
                new_id = cur.lastrowid
                stored = con.execute("SELECT * FROM audits WHERE id = ?", (new_id,)).fetchone()
        except sqlite3.DatabaseError as e:
            raise VitdashError(f"could not save the audit to {self.path}: {e}") from None
        return _record(stored)

    def find_by_hash(self, sha256: str) -> list[AuditRecord]:
        """Every earlier audit of this exact content, newest first."""
        return self.list(sha256=sha256)

    def list(self, *, text: str | None = None, sha256: str | None = None, verdicts: Sequence[str] | None = None,
             reviewer: str | None = None, user: str | None = None, since: str | None = None,
             until: str | None = None, limit: int | None = None) -> list[AuditRecord]:
        """Audits newest first, filtered: `text` in file name, hash, source, family, note, reviewer or user
        (case-insensitive); `verdicts` any of; `reviewer` and `user` exact; `since`/`until` ISO dates or times
        (UTC, `until` inclusive of that day)."""
        where, args = [], []
        if text:
            where.append("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in
                                           _TEXT_COLUMNS) + ")")
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            args += [pattern] * len(_TEXT_COLUMNS)
        if sha256:
            where.append("sha256 = ?")
            args.append(sha256)
        if verdicts:
            where.append(f"verdict IN ({', '.join('?' * len(verdicts))})")
            args += list(verdicts)
        for column, value in (("reviewer", reviewer), ("user", user)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if since:
            where.append("created_at >= ?")
            args.append(since)
        if until:
            where.append("created_at < ?")
            args.append(_day_after(until))
        sql = "SELECT * FROM audits" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        try:
            with self._connect() as con:
                return [_record(r) for r in con.execute(sql, args).fetchall()]
        except sqlite3.DatabaseError as e:
            raise VitdashError(f"could not read the audit history at {self.path}: {e}") from None

    def reviewers(self) -> list[str]:
        return self._distinct("reviewer")

    def users(self) -> list[str]:
        """Everyone who was signed in when they saved an audit."""
        return self._distinct("user")

    def _distinct(self, column: str) -> list[str]:
        with self._connect() as con:
            return [r[0] for r in con.execute(f"SELECT DISTINCT {column} FROM audits WHERE {column} != '' "
                                              f"ORDER BY {column}")]

    def count(self) -> int:
        with self._connect() as con:
            return con.execute("SELECT COUNT(*) FROM audits").fetchone()[0]

    # ---- lineage fingerprints (vitdash.population.lineage) ----------------------------------------------------

    def save_fingerprint(self, sha256: str, version: int, name: str, data: bytes) -> None:
        """Keep a checkpoint's fingerprint under its content hash (replacing one of another version)."""
        try:
            with self._connect() as con:
                con.execute("INSERT OR REPLACE INTO fingerprints (sha256, version, created_at, name, data) "
                            "VALUES (?, ?, ?, ?, ?)", (sha256, version, _now(), name, sqlite3.Binary(data)))
        except sqlite3.DatabaseError as e:
            raise VitdashError(f"could not save a fingerprint to {self.path}: {e}") from None

    def fingerprints(self, hashes: Sequence[str], version: int) -> dict[str, bytes]:
        """The stored fingerprints of `version` among `hashes`, by content hash."""
        return self._by_key("SELECT sha256, data FROM fingerprints WHERE version = ? AND sha256 IN ({})",
                            [version], hashes)

    def remember_hash(self, path: str, size_bytes: int, mtime_ns: int, sha256: str) -> None:
        """Note that the file at `path`, with this size and modification time, has this content hash."""
        try:
            with self._connect() as con:
                con.execute("INSERT OR REPLACE INTO file_hashes (path, size_bytes, mtime_ns, sha256) "
                            "VALUES (?, ?, ?, ?)", (path, int(size_bytes), int(mtime_ns), sha256))
        except sqlite3.DatabaseError as e:
            raise VitdashError(f"could not save a file's hash to {self.path}: {e}") from None

    def known_hashes(self, files: Sequence[tuple[str, int, int]]) -> dict[str, str]:
        """path -> content hash for the `(path, size, mtime_ns)` seen before unchanged (a rewritten file is not)."""
        stamp = {p: (int(size), int(mtime)) for p, size, mtime in files}
        rows = self._by_key("SELECT path, size_bytes, mtime_ns, sha256 FROM file_hashes WHERE path IN ({})",
                            [], list(stamp), row=lambda r: (r[0], (r[1], r[2], r[3])))
        return {p: sha for p, (size, mtime, sha) in rows.items() if stamp[p] == (size, mtime)}

    def _by_key(self, sql: str, args: list[Any], keys: Sequence[str], row=lambda r: (r[0], r[1])) -> dict[str, Any]:
        """`sql` with its IN list filled with `keys`, in chunks (SQLite bounds the variables of one statement)."""
        out: dict[str, Any] = {}
        keys = list(dict.fromkeys(keys))
        try:
            with self._connect() as con:
                for i in range(0, len(keys), 500):
                    chunk = keys[i:i + 500]
                    out.update(row(r) for r in con.execute(sql.format(", ".join("?" * len(chunk))), args + chunk))
        except sqlite3.DatabaseError as e:
            raise VitdashError(f"could not read {self.path}: {e}") from None
        return out

    def to_csv(self, records: Sequence[AuditRecord] | None = None) -> str:
        """CSV of `records` (default: all), one row per audit, the columns of `CSV_COLUMNS`."""
        rows = self.list() if records is None else records
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: round(v, CSV_DIGITS) if isinstance(v, float) else v for k, v in r.to_dict().items()})
        return out.getvalue()


def _migrate(con: sqlite3.Connection, path: Path) -> None:
    """Create the table, or bring an older one up to `SCHEMA_VERSION`, in one write transaction: two servers
    opening the same old file at once must not both add the column."""
    con.execute("BEGIN IMMEDIATE")
    try:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise VitdashError(f"{path} was written by a newer vitdash (schema {version}); "
                               "upgrade vitdash or point VITDASH_HISTORY_DB elsewhere")
        columns = {r[1] for r in con.execute("PRAGMA table_info(audits)")}
        if columns:
            for name, definition in _MIGRATIONS.items():
                if name not in columns:
                    con.execute(f"ALTER TABLE audits ADD COLUMN {name} {definition}")
        for statement in filter(str.strip, _SCHEMA.split(";")):
            con.execute(statement)
        if version < 2:
            con.execute("UPDATE audits SET verdict = 'init' WHERE verdict = 'random'")
        con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _data_name(acc: Mapping[str, Any] | None) -> str | None:
    if not acc:
        return None
    data = acc.get("data")
    if isinstance(data, Mapping):
        return str(data.get("name") or data.get("root") or "") or None
    return str(data) if data else None


def _day_after(until: str) -> str:
    """`until` as an exclusive bound: a bare date includes that whole day."""
    if len(until) == 10:  # YYYY-MM-DD
        from datetime import date, timedelta

        return (date.fromisoformat(until) + timedelta(days=1)).isoformat()
    return until + "\uffff"


def _record(row: sqlite3.Row) -> AuditRecord:
    d = dict(row)
    d["accuracy"] = json.loads(d["accuracy"]) if d["accuracy"] else None
    d["details"] = json.loads(d["details"]) if d["details"] else {}
    return AuditRecord(**d)


def accuracy_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """What history keeps of an accuracy result (`EvalResult.to_dict()`): the scores and how they were measured,
    not per-image detail."""
    keep = ("top1", "top5", "top5_k", "n_images", "n_classes", "num_outputs", "chance_top1", "reference_top1",
            "label_mapping", "preprocessing", "device", "dtype", "images_per_s", "cancelled", "domain")
    out = {k: result[k] for k in keep if k in result}
    data = result.get("data")
    if isinstance(data, Mapping):
        out["data"] = {k: data.get(k) for k in ("name", "kind", "root", "n_images", "n_classes")}
    return out


def latest_accuracy(records: Sequence[AuditRecord]) -> AuditRecord | None:
    """The newest record that holds an accuracy (records come newest first, as `find_by_hash` lists them)."""
    return next((r for r in records if r.top1 is not None), None)


def off_domain(accuracy: Any) -> str:
    """Why an accuracy result (`EvalResult` or its dict) says nothing about the model, or '' when it does."""
    acc = accuracy.to_dict() if hasattr(accuracy, "to_dict") else accuracy
    domain = (acc or {}).get("domain") or {}
    return domain.get("message", "") if domain.get("mismatch") else ""


def record_audit(history: AuditHistory, ckpt, *, audit=None, family=None, accuracy=None, reviewer: str = "",
                 note: str = "", off_domain_confirmed: bool = False, user: str = "") -> AuditRecord:
    """Save what the analyses found about `ckpt`: `audit` (vitdash.trained.verdict.Audit), `family`
    (vitdash.identity.family.FamilyMatch or ArchitectureReport), `accuracy` (vitdash.perform.evaluate.EvalResult
    or its dict); `user`: who is signed in.

    An accuracy measured on data that is not the model's domain is saved only with `off_domain_confirmed`:
    as "the model's accuracy" it would mislead everyone who finds the record later."""
    match = getattr(family, "match", family)  # an ArchitectureReport carries the FamilyMatch
    acc = accuracy.to_dict() if hasattr(accuracy, "to_dict") else accuracy
    why = off_domain(acc) if acc else ""
    if why and not off_domain_confirmed:
        raise VitdashError(f"not saved: {why} Confirm explicitly to save it anyway.")
    details: dict[str, Any] = {"layout": ckpt.layout, "format": ckpt.format, "num_params": ckpt.num_params}
    if audit is not None:
        details["audit"] = {k: v for k, v in audit.to_dict().items() if k != "tensors"}
    if match is not None:
        details["family"] = {"summary": match.summary, "differences": list(match.differences)}
    return history.record(
        sha256=ckpt.sha256, file_name=ckpt.name or Path(ckpt.source).name, size_bytes=ckpt.size_bytes,
        source=ckpt.source, verdict=getattr(audit, "verdict", None),
        confidence=getattr(audit, "confidence", None), family=getattr(match, "name", None),
        family_kind=getattr(match, "kind", None), accuracy=accuracy_summary(acc) if acc else None,
        reviewer=reviewer, note=note, details=details, user=user)
