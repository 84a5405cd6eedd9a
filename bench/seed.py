"""The small image that manifest, tag and catalog workloads put everywhere."""

from __future__ import annotations

import json

from bench.client import Client, image_manifest, mount_or_push_blob, push_small_blob

CONFIG = json.dumps(
    {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
    }
).encode()
LAYER = b"Dockyard benchmark layer\n"


def seed_image(client: Client, repo: str) -> bytes:
    """Upload the image's blobs into `repo`; returns its manifest to PUT."""
    push_small_blob(client, repo, CONFIG)
    push_small_blob(client, repo, LAYER)
    return image_manifest(CONFIG, LAYER)


def mount_image(client: Client, repo: str, source: str) -> bytes:
    """Mount the image's blobs into `repo` from `source`, where they are."""
    mount_or_push_blob(client, repo, CONFIG, source)
    mount_or_push_blob(client, repo, LAYER, source)
    return image_manifest(CONFIG, LAYER)
