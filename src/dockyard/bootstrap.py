"""Build the registry's parts from a config, for the server and the CLI alike."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from dockyard.config import Config
from dockyard.core.registry import Registry
from dockyard.metadata.cache import CachedMetadataStore, ChangeStamp
from dockyard.metadata.store import SqlMetadataStore, create_db_engine
from dockyard.storage import open_blob_store


def build_registry(config: Config, engine: Engine | None = None) -> Registry:
    blobs = open_blob_store(config.storage.driver, config.storage_path)
    engine = engine or create_db_engine(config.resolved_database_url)
    metadata = _metadata_store(engine)
    return Registry(blobs, metadata, config.max_manifest_bytes, config.sparse_indexes)


def _metadata_store(engine: Engine) -> SqlMetadataStore:
    """SQLite lives on one machine, so its processes can share a change stamp."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return SqlMetadataStore(engine)
    stamp = ChangeStamp(Path(database + "-stamp"))
    return CachedMetadataStore(engine, stamp)
