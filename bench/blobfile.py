"""Large random blobs that live in one file and are never read into memory."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from bench.client import sha256_file

# Blob i starts at byte i * STRIDE of the file: blobs of the same size with
# distinct digests, so no push finds its blob already stored.
STRIDE = 4096
WRITE_PIECE = 4 * 1024 * 1024


@dataclass(frozen=True)
class BlobFile:
    path: Path
    size: int
    count: int

    @classmethod
    def create(cls, path: Path, size: int, count: int) -> BlobFile:
        remaining = size + (count - 1) * STRIDE
        with open(path, "wb") as file:
            while remaining > 0:
                piece = os.urandom(min(remaining, WRITE_PIECE))
                file.write(piece)
                remaining -= len(piece)
        return cls(path, size, count)

    def span(self, index: int) -> tuple[int, int]:
        """(offset, size) of blob `index` in the file."""
        if not 0 <= index < self.count:
            raise IndexError(f"blob {index} of {self.count}")
        return index * STRIDE, self.size

    @functools.cache  # noqa: B019 - a few blobs per run, kept for the run
    def digest(self, index: int) -> str:
        return sha256_file(self.path, self.span(index))
