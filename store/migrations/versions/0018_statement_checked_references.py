"""On PostgreSQL, the references the bulk writers write once per item are checked once per statement, not once per
row: a decision's item and batch (``routing_decisions.item_id``, ``.batch_id``), an item's source file
(``items.source_id``) and a prediction's item (``predictions.item_id``).

A PostgreSQL foreign key checks each inserted row on its own: one query and one row lock on the referenced row,
per row. Route writes a decision per item, ingest an item per record and score a prediction per item, so those
checks cost more than the rows they check: at 200,000 items, route took 6.7-9.0 s with the foreign keys and
4.9-5.0 s without them, ingest 4.7-6.9 s against 3.9-5.3 s (``bench/results/ingest-route-200k.md``). Each foreign
key becomes triggers that keep what it promised:

* an insert is checked after the statement, over every row it wrote at once (its transition table: one anti-join,
  not one query per row), and refused with SQLSTATE 23503 (``foreign_key_violation``, an IntegrityError to
  SQLAlchemy) naming the first key that points at nothing;
* a change of the column, a change of the referenced key, and the deletion of a referenced row are checked per
  row (none of them happens in Sluice's own writes, so they cost nothing there);
* a TRUNCATE of a referenced table is refused while any row points at it (the foreign key refused it outright, and
  cascaded a ``TRUNCATE ... CASCADE``: now the pointing table must be emptied first, or in an earlier statement).

What the triggers do not do that the foreign key did: lock the referenced row. A transaction deleting an item while
another one writes its decision could now commit both. Sluice never deletes items, batches or sources.

SQLite keeps its foreign keys: there they are an index probe per row, and measured no slower than none. The model
(``store/models.py``) keeps declaring them; the schema check (``tests/store/test_db.py``) reads `REFERENCES` below
to know which ones PostgreSQL enforces this way. The downgrade drops the triggers and restores the foreign keys,
validating every row.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

# (table, column, referenced table, referenced column, the foreign key's name when restored)
REFERENCES = (
    ("routing_decisions", "item_id", "items", "id", "routing_decisions_item_id_fkey"),
    ("routing_decisions", "batch_id", "routing_batches", "id", "fk_decision_batch"),
    ("items", "source_id", "item_sources", "id", "fk_item_source"),
    ("predictions", "item_id", "items", "id", "predictions_item_id_fkey"),
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    schema = bind.execute(sa.text("SELECT current_schema()")).scalar_one()
    inspector = sa.inspect(bind)
    for table, column, parent, key, name in REFERENCES:
        for fk in inspector.get_foreign_keys(table):
            if fk["name"] and fk["constrained_columns"] == [column] and fk["referred_table"] == parent:
                op.drop_constraint(fk["name"], table, type_="foreignkey")
        for statement in _trigger_ddl(schema, table, column, parent, key, name):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, parent, key, name in REFERENCES:
        for statement in _drop_ddl(table, column, parent):
            op.execute(statement)
        op.create_foreign_key(name, table, parent, [column], [key])


def _drop_ddl(table: str, column: str, parent: str) -> list[str]:
    """What drops the triggers and functions `_trigger_ddl` made for `table`.`column` -> `parent`."""
    base = _base(table, column)
    return [f"DROP TRIGGER IF EXISTS {base}_insert ON {table}", f"DROP TRIGGER IF EXISTS {base}_update ON {table}",
            *(f"DROP TRIGGER IF EXISTS {base}_parent_{event} ON {parent}"
              for event in ("delete", "update", "truncate")),
            *(f"DROP FUNCTION IF EXISTS {base}_{function}()"
              for function in ("inserted", "updated", "parent_gone", "parent_truncated"))]


def _base(table: str, column: str) -> str:
    return f"sluice_ref_{table}_{column}"


def _trigger_ddl(schema: str, table: str, column: str, parent: str, key: str, name: str, *,
                 check_insert: bool = True) -> list[str]:
    """The functions and triggers that check `table`.`column` -> `parent`.`key`, as the foreign key `name` did
    (NO ACTION, MATCH SIMPLE: a NULL points at nothing and is allowed; a referenced key may go if a row with it is
    there again at the end of the statement). The tables are named with their schema, so neither a session's
    search_path nor a temporary table of the same name changes what is checked; a refusal carries the foreign key's
    name as its constraint, for whoever reads the error's diagnostics. Without `check_insert`, an insert into
    `table` is left unchecked (migration 0019's state rows, which the database writes from their items)."""
    base = _base(table, column)
    child, referenced = f'"{schema}"."{table}"', f'"{schema}"."{parent}"'
    child_message = f'insert or update on table "{table}" violates the reference {table}.{column} -> {parent}.{key}'
    parent_message = (f'update or delete on table "{parent}" violates the reference {table}.{column} -> '
                      f'{parent}.{key}')
    diagnostics = f"CONSTRAINT = '{name}', TABLE = '{table}', COLUMN = '{column}'"

    def absent(value: str) -> str:  # no referenced row holds `value`
        return f"NOT EXISTS (SELECT 1 FROM {referenced} p WHERE p.{key} = {value})"

    orphans = f"FROM inserted n WHERE n.{column} IS NOT NULL AND {absent(f'n.{column}')}"
    missing = f"""'Key ({column})=(' || %s || ') is not present in table "{parent}".'"""
    inserts = [
        _refusing(f"{base}_inserted", f"EXISTS (SELECT 1 {orphans})", child_message, diagnostics,
                  missing % f"(SELECT n.{column}::text {orphans} LIMIT 1)"),
        f"CREATE TRIGGER {base}_insert AFTER INSERT ON {table} REFERENCING NEW TABLE AS inserted "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {base}_inserted()",
    ] if check_insert else []
    return inserts + [
        _refusing(f"{base}_updated", f"NEW.{column} IS NOT NULL AND {absent(f'NEW.{column}')}", child_message,
                  diagnostics, missing % f"NEW.{column}"),
        _refusing(f"{base}_parent_gone",
                  f"EXISTS (SELECT 1 FROM {child} c WHERE c.{column} = OLD.{key}) AND {absent(f'OLD.{key}')}",
                  parent_message, diagnostics,
                  f"""'Key ({key})=(' || OLD.{key} || ') is still referenced from table "{table}".'"""),
        _refusing(f"{base}_parent_truncated", f"EXISTS (SELECT 1 FROM {child} c WHERE c.{column} IS NOT NULL)",
                  f'cannot truncate table "{parent}": {table}.{column} points at its rows', diagnostics),
        f"CREATE TRIGGER {base}_update AFTER UPDATE OF {column} ON {table} FOR EACH ROW "
        f"WHEN (NEW.{column} IS DISTINCT FROM OLD.{column}) EXECUTE FUNCTION {base}_updated()",
        f"CREATE TRIGGER {base}_parent_delete AFTER DELETE ON {parent} FOR EACH ROW "
        f"EXECUTE FUNCTION {base}_parent_gone()",
        f"CREATE TRIGGER {base}_parent_update AFTER UPDATE OF {key} ON {parent} FOR EACH ROW "
        f"WHEN (NEW.{key} IS DISTINCT FROM OLD.{key}) EXECUTE FUNCTION {base}_parent_gone()",
        f"CREATE TRIGGER {base}_parent_truncate BEFORE TRUNCATE ON {parent} FOR EACH STATEMENT "
        f"EXECUTE FUNCTION {base}_parent_truncated()",
    ]


def _refusing(function: str, condition: str, message: str, diagnostics: str, detail: str | None = None) -> str:
    """A trigger function that raises SQLSTATE 23503 with `message` (and the SQL expression `detail`) when the SQL
    `condition` holds, and otherwise lets the statement go on."""
    detail_clause = f", DETAIL = {detail}" if detail else ""
    return f"""CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF {condition} THEN
        RAISE EXCEPTION '{message}' USING ERRCODE = 'foreign_key_violation', {diagnostics}{detail_clause};
    END IF;
    RETURN NULL;
END $$"""
