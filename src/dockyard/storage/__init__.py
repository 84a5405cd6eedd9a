"""Blob storage drivers behind the `dockyard.core.ports.BlobStore` interface."""

from __future__ import annotations

from pathlib import Path

from dockyard.core.ports import BlobStore
from dockyard.storage.filesystem import FilesystemBlobStore


def open_blob_store(driver: str, path: Path) -> BlobStore:
    """Build the configured driver; an unknown name is a start-up error."""
    if driver == "filesystem":
        return FilesystemBlobStore(path)
    raise ValueError(f"unknown storage driver {driver!r}")
