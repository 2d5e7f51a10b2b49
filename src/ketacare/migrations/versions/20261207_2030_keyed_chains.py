"""Keyed, per-clinic audit chains: audit_entries gains chain_id, chain_seq and scheme (seq becomes
the row number across chains, assigned by the database); audit_heads (one row per chain)
replaces the single audit_head row; ledger_entries gains scheme.

Existing entries are not re-chained: they keep their unkeyed SHA-256 links, marked scheme 1.
The existing audit entries become the start of the system chain (chain 0, chain_seq = seq), and
each existing ledger chain goes on from its unkeyed entries; new entries are keyed (scheme 2),
and verification accepts unkeyed entries only before the first keyed one of a chain.

Revision ID: 0014
Revises: 0010
Create Date: 2026-12-07 20:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _without_update_trigger(table: str, statement: str) -> None:
    """Run one back-fill UPDATE on an append-only table, its trigger off for that statement only."""
    if _sqlite():
        op.execute(f"DROP TRIGGER {table}_no_update")
        op.execute(statement)
        op.execute(
            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
        )
        return
    op.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")
    op.execute(statement)
    op.execute(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only")


def upgrade() -> None:
    op.add_column("audit_entries", sa.Column("chain_id", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("audit_entries", sa.Column("chain_seq", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("audit_entries", sa.Column("scheme", sa.Integer(), nullable=False, server_default="1"))
    _without_update_trigger("audit_entries", "UPDATE audit_entries SET chain_seq = seq")
    op.create_index("ix_audit_entries_chain", "audit_entries", ["chain_id", "chain_seq"], unique=True)
    if not _sqlite():
        op.alter_column("audit_entries", "chain_id", server_default=None)
        op.alter_column("audit_entries", "chain_seq", server_default=None)
        # seq is now assigned by the database (SQLite's INTEGER PRIMARY KEY already is).
        op.execute("CREATE SEQUENCE audit_entries_seq_seq OWNED BY audit_entries.seq")
        op.execute(
            "SELECT setval('audit_entries_seq_seq', "
            "COALESCE((SELECT max(seq) FROM audit_entries), 0) + 1, false)"
        )
        op.execute("ALTER TABLE audit_entries ALTER COLUMN seq SET DEFAULT nextval('audit_entries_seq_seq')")

    op.create_table(
        "audit_heads",
        sa.Column("chain_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", name=op.f("pk_audit_heads")),
    )
    op.execute("INSERT INTO audit_heads (chain_id, seq, last_hash) SELECT 0, seq, last_hash FROM audit_head")
    op.drop_table("audit_head")

    op.add_column("ledger_entries", sa.Column("scheme", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    if _sqlite():
        op.execute("ALTER TABLE ledger_entries DROP COLUMN scheme")
    else:
        op.drop_column("ledger_entries", "scheme")
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    # The single chain of before goes on from the system chain; clinic chains do not fit it.
    op.execute(
        "INSERT INTO audit_head (id, seq, last_hash) "
        "SELECT 1, seq, last_hash FROM audit_heads WHERE chain_id = 0"
    )
    op.execute(
        "INSERT INTO audit_head (id, seq, last_hash) SELECT 1, 0, "
        "'0000000000000000000000000000000000000000000000000000000000000000' "
        "WHERE NOT EXISTS (SELECT 1 FROM audit_head)"
    )
    op.drop_table("audit_heads")
    op.drop_index("ix_audit_entries_chain", table_name="audit_entries")
    if not _sqlite():
        op.execute("ALTER TABLE audit_entries ALTER COLUMN seq DROP DEFAULT")
        op.execute("DROP SEQUENCE IF EXISTS audit_entries_seq_seq")
    for column in ("scheme", "chain_seq", "chain_id"):
        if _sqlite():
            op.execute(f"ALTER TABLE audit_entries DROP COLUMN {column}")
        else:
            op.drop_column("audit_entries", column)
