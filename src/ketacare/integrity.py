"""Keys and anchors for the hash chains (the audit trail and the controlled-substance ledger).

Keyed: each entry's hash is an HMAC-SHA256 under the chain key, which lives outside the
database (``KETACARE_CHAIN_KEY`` or the file ``<data dir>/chain_key``). Someone who can write
to the database but does not hold the key cannot recompute a chain after editing it. Entries
written before keyed chains existed carry ``scheme = 1`` (plain SHA-256) and are accepted only
as the start of a chain: once a keyed entry follows, nothing unkeyed may come after it.

Anchored: a signed checkpoint of each chain's head (its length and last hash) is appended to a
file outside the database (``KETACARE_ANCHOR_FILE``, default ``<data dir>/chain-anchors.jsonl``)
when a chain is verified, when a backup is taken, and after a commit once the interval has
passed. Verification checks the chain against every checkpoint: a chain shorter than one that
was anchored lost entries; a hash that differs at an anchored position was rewritten. A restore
writes a ``restore`` line for every chain, so checkpoints of the history the restore discarded
no longer count. Each line is signed with a key derived from the chain key.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from ketacare.config import Settings

SCHEME_LEGACY = 1  # plain SHA-256: entries written before the chains were keyed
SCHEME_KEYED = 2  # HMAC-SHA256 under the chain key
# Used only where the environment is test or development: public, so it protects nothing.
DEVELOPMENT_KEY = hashlib.sha256(b"ketacare development and test chain key (not a secret)").digest()
MIN_KEY_LENGTH = 32


class ChainKeyMissing(RuntimeError):
    pass


@dataclass
class _Config:
    key: bytes = DEVELOPMENT_KEY
    anchor_file: Path | None = None
    anchor_interval_s: float = 0.0
    last_anchored: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_config = _Config()


def configure(key: bytes, anchor_file: Path | None = None, anchor_interval_s: float = 0.0) -> None:
    """Set the process's chain key; with an anchor file and interval, anchor after commits."""
    global _config
    _config = _Config(key=key, anchor_file=anchor_file, anchor_interval_s=anchor_interval_s)


def configure_from(settings: Settings) -> None:
    """The chain key and anchoring of this process (raises ChainKeyMissing where one is required)."""
    configure(
        settings.resolved_chain_key(),
        settings.resolved_anchor_file,
        settings.resolved_anchor_interval_seconds,
    )


def configured_anchors() -> AnchorLog:
    """The checkpoints in this process's anchor file (none when it has none configured)."""
    return read_anchors(_config.anchor_file)


def chain_key() -> bytes:
    return _config.key


def link_hash(prev_hash: str, canonical: str, scheme: int, key: bytes | None = None) -> str:
    """The hash of one entry: its predecessor's hash and a canonical JSON of its fields."""
    message = (prev_hash + canonical).encode()
    if scheme == SCHEME_LEGACY:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key or _config.key, message, hashlib.sha256).hexdigest()


def canonical_json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


# --- anchors -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Anchor:
    chain: str  # "audit:0" (the system chain), "audit:<clinic id>", "ledger:<clinic id>"
    seq: int  # the chain's length when anchored
    hash: str  # the hash of entry ``seq`` (the genesis hash when 0)
    at: str
    kind: str = "checkpoint"  # or "restore": checkpoints beyond this length no longer count
    note: str = ""


def _anchor_key(key: bytes) -> bytes:
    return hmac.new(key, b"ketacare chain anchors", hashlib.sha256).digest()


def _signature(anchor: Anchor, key: bytes) -> str:
    body = canonical_json(
        {"chain": anchor.chain, "seq": anchor.seq, "hash": anchor.hash, "at": anchor.at, "kind": anchor.kind}
        | {"note": anchor.note}
    )
    return hmac.new(_anchor_key(key), body.encode(), hashlib.sha256).hexdigest()


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def write_anchors(path: Path, anchors: Iterable[Anchor], key: bytes | None = None) -> int:
    """Append signed lines (one write, under an exclusive lock, then fsync). Returns lines written."""
    key = key or _config.key
    lines = []
    for anchor in anchors:
        record = {
            "chain": anchor.chain,
            "seq": anchor.seq,
            "hash": anchor.hash,
            "at": anchor.at,
            "kind": anchor.kind,
            "note": anchor.note,
            "sig": _signature(anchor, key),
        }
        lines.append(json.dumps(record, sort_keys=True) + "\n")
    if not lines:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, "".join(lines).encode())
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock
    return len(lines)


@dataclass
class AnchorLog:
    """The checkpoints that still count, per chain, and any line that failed its signature."""

    by_chain: dict[str, list[Anchor]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    source: Path | None = None

    def chains(self, prefix: str) -> set[str]:
        return {name for name in self.by_chain if name.startswith(prefix)}

    def for_chain(self, name: str) -> list[Anchor]:
        return self.by_chain.get(name, [])


def read_anchors(path: Path | None, key: bytes | None = None) -> AnchorLog:
    key = key or _config.key
    log = AnchorLog(source=path)
    if path is None or not path.exists():
        return log
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                anchor = Anchor(
                    chain=str(raw["chain"]),
                    seq=int(raw["seq"]),
                    hash=str(raw["hash"]),
                    at=str(raw["at"]),
                    kind=str(raw.get("kind", "checkpoint")),
                    note=str(raw.get("note", "")),
                )
                signature = str(raw["sig"])
            except (ValueError, KeyError, TypeError):
                log.problems.append(f"anchor file line {number} is not a checkpoint")
                continue
            if not hmac.compare_digest(signature, _signature(anchor, key)):
                log.problems.append(f"anchor file line {number} has a bad signature (altered or another key)")
                continue
            kept = log.by_chain.setdefault(anchor.chain, [])
            if anchor.kind == "restore":
                kept[:] = [a for a in kept if a.seq <= anchor.seq]
            kept.append(anchor)
    return log


def check_anchors(anchors: list[Anchor], length: int, hash_at: dict[int, str]) -> str:
    """'' when the chain agrees with every checkpoint; else what is wrong."""
    for anchor in anchors:
        if anchor.seq > length:
            return (
                f"the chain has {length} entries but {anchor.seq} were anchored at {anchor.at} "
                "(entries removed)"
            )
        if anchor.seq > 0 and hash_at.get(anchor.seq) != anchor.hash:
            return f"entry {anchor.seq} differs from the checkpoint anchored at {anchor.at} (chain rewritten)"
    return ""


def anchored_positions(anchors: list[Anchor]) -> set[int]:
    return {a.seq for a in anchors if a.seq > 0}


# --- walking a chain -----------------------------------------------------------------------------

GENESIS_HASH = "0" * 64  # the prev_hash of a chain's first entry


@dataclass(frozen=True)
class Link:
    """One stored entry of a chain as the walk sees it. ``computed_hash`` is the entry's hash
    recomputed from its stored fields (and its own ``prev_hash``) by the chain's owner."""

    seq: int
    prev_hash: str
    scheme: int
    stored_hash: str
    computed_hash: str
    legacy_allowed: bool = False  # an unkeyed (scheme 1) hash is acceptable here, before any keyed one


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""


def walk_chain(
    links: Iterable[Link],
    head: tuple[int, str] | None,
    anchors: list[Anchor] | None = None,
    *,
    head_required: bool = True,
    altered: str = "entry {seq} was altered after it was written",
) -> ChainCheck:
    """Walk one chain in order (the audit trail's and the ledger's alike) and name the first entry
    that was edited, inserted or removed; then the head (entries cut from the end) and the
    anchored checkpoints (a chain rewritten from some entry on)."""
    anchors = anchors or []
    wanted = anchored_positions(anchors)
    hash_at: dict[int, str] = {}
    prev_hash = GENESIS_HASH
    checked = 0
    keyed_seen = False
    for link in links:
        expected = checked + 1
        if link.seq != expected:
            return ChainCheck(
                False, checked, expected, f"entry {expected} is missing (next stored is {link.seq})"
            )
        if link.prev_hash != prev_hash:
            return ChainCheck(
                False,
                checked,
                link.seq,
                f"entry {link.seq} does not follow entry {checked} (inserted or reordered)",
            )
        legacy = link.scheme == SCHEME_LEGACY
        if link.scheme not in (SCHEME_LEGACY, SCHEME_KEYED) or (
            legacy and (keyed_seen or not link.legacy_allowed)
        ):
            return ChainCheck(
                False, checked, link.seq, f"entry {link.seq} claims an unkeyed hash where none can be"
            )
        keyed_seen = keyed_seen or link.scheme == SCHEME_KEYED
        if link.computed_hash != link.stored_hash:
            return ChainCheck(False, checked, link.seq, altered.format(seq=link.seq))
        prev_hash = link.stored_hash
        if link.seq in wanted:
            hash_at[link.seq] = prev_hash
        checked += 1
    if head is None and checked and head_required:
        return ChainCheck(False, checked, None, "the chain's head record is missing (deleted)")
    head_seq, head_hash = head if head is not None else (0, GENESIS_HASH)
    if (head is not None or head_required) and (head_seq != checked or head_hash != prev_hash):
        return ChainCheck(
            False,
            checked,
            checked + 1,
            f"the chain ends at entry {checked} but {head_seq} were written (entries removed from the end)",
        )
    if problem := check_anchors(anchors, checked, hash_at):
        return ChainCheck(False, checked, None, problem)
    return ChainCheck(True, checked)


# --- anchoring after commit ----------------------------------------------------------------------

_HEADS = "ketacare.integrity.heads"


def note_head(db: Session, chain: str, seq: int, last_hash: str) -> None:
    """Remember a chain's new head; it is anchored after commit when the interval has passed."""
    heads: dict[str, tuple[int, str]] = db.info.setdefault(_HEADS, {})
    heads[chain] = (seq, last_hash)


@event.listens_for(Session, "after_commit")
def _anchor_after_commit(session: Session) -> None:
    heads: dict[str, tuple[int, str]] = session.info.pop(_HEADS, {})
    config = _config
    if not heads or config.anchor_file is None or config.anchor_interval_s <= 0:
        return
    now = time.monotonic()
    with config.lock:
        due = {
            chain: head
            for chain, head in heads.items()
            if now - config.last_anchored.get(chain, float("-inf")) >= config.anchor_interval_s
        }
        for chain in due:
            config.last_anchored[chain] = now
    if due:
        at = now_iso()
        with contextlib.suppress(OSError):  # a full disk must not fail a committed request
            write_anchors(
                config.anchor_file, [Anchor(chain, seq, h, at) for chain, (seq, h) in sorted(due.items())]
            )


@event.listens_for(Session, "after_rollback")
def _forget_heads(session: Session) -> None:
    session.info.pop(_HEADS, None)


# --- server lock (SQLite restore refuses while the app runs) ---------------------------------


@contextlib.contextmanager
def held_lock(path: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold a lock on ``path`` while the block runs; the kernel drops it if the process dies.

    Servers hold it shared (several may run); a restore holds it exclusive, so it cannot start
    while a server runs, and no server starts while it restores."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise LockHeld(str(path)) from exc
    try:
        yield
    finally:
        os.close(fd)


class LockHeld(RuntimeError):
    pass
