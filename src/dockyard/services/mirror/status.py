"""What each pull-through cache holds and how its upstream is doing."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from dockyard.config import UpstreamConfig
from dockyard.core.ports import MetadataStore
from dockyard.metadata.mirror import MirrorStore
from dockyard.services.mirror.upstream import Upstream, UpstreamFailed


@dataclass(frozen=True, slots=True)
class UpstreamStatus:
    name: str
    url: str
    mirror: bool
    # A registry answered GET /v2/ just now (200, or 401 asking for a login).
    reachable: bool
    answer: str
    cached_repositories: int
    cached_images: int
    bytes: int
    hits: int
    misses: int
    failures: int
    last_failure: str | None
    last_failure_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.last_failure_at is not None:
            data["last_failure_at"] = self.last_failure_at.isoformat()
        return data


async def upstream_status(
    config: UpstreamConfig, metadata: MetadataStore, store: MirrorStore
) -> UpstreamStatus:
    reachable, answer = await _ping(config)
    repositories, images = await store.cached_images(config.name)
    usage = await metadata.usage(config.name)
    counters = await store.counters(config.name)
    return UpstreamStatus(
        name=config.name,
        url=config.url,
        mirror=config.mirror,
        reachable=reachable,
        answer=answer,
        cached_repositories=repositories,
        cached_images=images,
        bytes=usage.bytes,
        hits=counters.hits,
        misses=counters.misses,
        failures=counters.failures,
        last_failure=counters.last_failure,
        last_failure_at=counters.last_failure_at,
    )


async def _ping(config: UpstreamConfig) -> tuple[bool, str]:
    upstream = Upstream(config)
    try:
        status = await upstream.ping()
    except UpstreamFailed as exc:
        return False, str(exc)
    finally:
        await upstream.close()
    # 401 is a registry asking for a login that GET /v2/ did not send.
    return status in (200, 401), f"GET /v2/ answered {status}"
