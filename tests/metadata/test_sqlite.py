"""How Dockyard sets up each SQLite connection."""

from sqlalchemy import text

from dockyard.metadata.store import create_db_engine

FULL = 2  # what `PRAGMA synchronous` reads for FULL


def test_every_commit_is_synced_before_it_returns(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'dockyard.db'}")

    with engine.connect() as connection:
        journal = connection.execute(text("PRAGMA journal_mode")).scalar()
        synchronous = connection.execute(text("PRAGMA synchronous")).scalar()
    engine.dispose()

    # In WAL mode anything short of FULL can lose the last commits, those
    # clients were already told had landed, when the machine loses power.
    assert journal == "wal"
    assert synchronous == FULL
