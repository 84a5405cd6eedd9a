"""Build the registry's parts from a config, for the server and the CLI alike."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from dockyard.config import Config
from dockyard.core.registry import Registry
from dockyard.metadata.accounts import SqlAccountStore
from dockyard.metadata.cache import CachedMetadataStore, ChangeStamp
from dockyard.metadata.collection import CollectionStore, LifecycleStore
from dockyard.metadata.mirror import MirrorStore
from dockyard.metadata.store import SqlMetadataStore, create_db_engine
from dockyard.services.audit import Auditor
from dockyard.services.auth.records import AccountStore
from dockyard.services.auth.service import AuthService
from dockyard.services.auth.throttle import LoginThrottle
from dockyard.services.auth.tokens import TokenSigner, load_or_create_key
from dockyard.services.gc import GarbageCollector
from dockyard.services.lifecycle.runner import LifecycleRunner
from dockyard.services.ratelimit import RateLimiter
from dockyard.storage import open_blob_store

if TYPE_CHECKING:
    from dockyard.services.mirror.cache import PullThroughCache


def build_registry(config: Config, engine: Engine | None = None) -> Registry:
    blobs = open_blob_store(config.storage.driver, config.storage_path)
    engine = engine or create_db_engine(config.resolved_database_url)
    metadata = _metadata_store(engine)
    # A HEAD renews a link a quarter of the grace period old, so a client
    # that checked a blob has most of the period to push its manifest.
    renewal = timedelta(seconds=config.gc.grace_period / 4)
    return Registry(
        blobs, metadata, config.max_manifest_bytes, config.sparse_indexes, renewal
    )


def build_lifecycle(config: Config, registry: Registry) -> LifecycleRunner:
    assert isinstance(registry.metadata, SqlMetadataStore)
    auditor = Auditor(SqlAccountStore(registry.metadata.engine))
    return LifecycleRunner(
        registry,
        LifecycleStore(registry.metadata),
        CollectionStore(registry.metadata),
        auditor,
        timedelta(seconds=config.gc.grace_period),
    )


def build_collector(config: Config, registry: Registry) -> GarbageCollector:
    assert isinstance(registry.metadata, SqlMetadataStore)
    return GarbageCollector(
        CollectionStore(registry.metadata),
        registry.blobs,
        timedelta(seconds=config.gc.grace_period),
        timedelta(seconds=config.gc.upload_max_age),
        config.gc.untagged,
        Auditor(SqlAccountStore(registry.metadata.engine)),
    )


def build_mirror(config: Config, registry: Registry) -> PullThroughCache | None:
    """The pull-through caches, or None when no upstream is configured."""
    if not config.upstreams:
        return None
    # Imported here: its HTTP client costs every process some MiB otherwise.
    from dockyard.services.mirror.cache import PullThroughCache

    assert isinstance(registry.metadata, SqlMetadataStore)
    store = MirrorStore(registry.metadata)
    return PullThroughCache(registry, config.upstreams, store)


def build_account_store(engine: Engine) -> SqlAccountStore:
    return SqlAccountStore(engine)


def _metadata_store(engine: Engine) -> SqlMetadataStore:
    """SQLite lives on one machine, so its processes can share a change stamp."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return SqlMetadataStore(engine)
    path = Path(database + "-stamp")
    return CachedMetadataStore(engine, ChangeStamp(path), ChangeStamp(path, slot=1))


def auth_enabled(config: Config, store: AccountStore) -> bool:
    """On when configured so, or, unless configured off, once a user exists."""
    if config.auth.enabled is not None:
        return config.auth.enabled
    return store.count_users() > 0


def build_auth(
    config: Config, store: AccountStore, auditor: Auditor
) -> AuthService | None:
    """The auth service, or None when authentication is off."""
    if not auth_enabled(config, store):
        return None
    settings = config.auth
    key = load_or_create_key(config.signing_key_path, settings.algorithm)
    signer = TokenSigner(key, settings.algorithm, settings.issuer, settings.service)
    throttle = LoginThrottle(
        settings.failed_logins_per_user,
        settings.failed_logins_per_address,
        config.redis_url,
    )
    return AuthService(
        store,
        signer,
        throttle,
        auditor,
        settings.token_ttl,
        settings.refresh_token_ttl,
        tuple(upstream.name for upstream in config.upstreams),
    )


def build_rate_limiter(config: Config) -> RateLimiter | None:
    """The rate limiter, or None when no limit is configured."""
    settings = config.rate_limits
    if not settings.enabled:
        return None
    return RateLimiter(
        settings.anonymous,
        settings.authenticated,
        settings.overrides,
        settings.pushes,
        settings.requests,
        config.redis_url,
    )
