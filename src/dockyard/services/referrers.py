"""Referrer trees: an image's signatures, SBOMs and attestations, and theirs.

A signature may itself be signed, or an SBOM attested, so referrers are
followed down to `MAX_DEPTH` levels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dockyard.core.digest import Digest
from dockyard.core.manifest import Descriptor
from dockyard.core.registry import Registry

MAX_DEPTH = 8

# Artifact types of the common supply-chain tools, by the kind users know.
_KINDS = (
    ("signature", ("signature", "cosign.artifact.sig", "notary")),
    ("sbom", ("spdx", "cyclonedx", "syft", "sbom")),
    ("attestation", ("in-toto", "attestation", "provenance", "sigstore.bundle")),
    ("vulnerability report", ("vuln", "sarif")),
)


def artifact_kind(artifact_type: str | None) -> str:
    """A short name for what an artifact type holds, or 'artifact'."""
    lowered = (artifact_type or "").lower()
    for kind, markers in _KINDS:
        if any(marker in lowered for marker in markers):
            return kind
    return "artifact"


@dataclass
class ReferrerNode:
    descriptor: Descriptor
    referrers: list[ReferrerNode] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return artifact_kind(self.descriptor.artifact_type)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.descriptor.to_json(),
            "kind": self.kind,
            "referrers": [node.to_json() for node in self.referrers],
        }


async def referrer_tree(
    registry: Registry, repository: str, subject: Digest, depth: int = MAX_DEPTH
) -> list[ReferrerNode]:
    """Every referrer of `subject` in the repository, each with its own."""
    if depth == 0:
        return []
    found = await registry.list_referrers(repository, subject)
    return [
        ReferrerNode(d, await referrer_tree(registry, repository, d.digest, depth - 1))
        for d in found
    ]
