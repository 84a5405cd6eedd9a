"""Dockyard's one typed configuration.

Values come, lowest priority first, from the defaults here, a YAML file,
`DOCKYARD_*` environment variables (`DOCKYARD_STORAGE__DRIVER` for nested
keys) and command-line flags. Any bad value stops start-up with a message that
names the key and the value.
"""

from __future__ import annotations

import ipaddress
import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from dockyard.core.manifest import DEFAULT_MAX_MANIFEST_BYTES

# The values read from the config file while `load_config` builds a Config.
_file_values: ContextVar[dict[str, Any]] = ContextVar("file_values")


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


class StorageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    driver: Literal["filesystem"] = "filesystem"
    # Defaults to `<data_dir>/storage`.
    path: Path | None = None


class AuthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # None: on when at least one user exists as `dockyard serve` starts.
    enabled: bool | None = None
    # The `service` clients send to the token endpoint, and the tokens' `aud`.
    service: str = "dockyard"
    issuer: str = "dockyard"
    # Defaults to `<this registry's external URL>/token`.
    realm: str | None = None
    algorithm: Literal["ES256", "RS256"] = "ES256"
    # Defaults to `<data_dir>/token-signing-key.pem`, created on first start.
    signing_key: Path | None = None
    # Lifetime of the registry tokens `/token` hands out, in seconds.
    token_ttl: int = Field(default=300, ge=30, le=86400)
    # Lifetime of refresh tokens (`access_type=offline`), in seconds.
    refresh_token_ttl: int = Field(default=30 * 86400, ge=300)
    # Failed logins allowed per window before 429, per user and per address.
    failed_logins_per_user: str = "10/5minutes"
    failed_logins_per_address: str = "30/5minutes"

    @field_validator("failed_logins_per_user", "failed_logins_per_address")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError("expected COUNT/PERIOD, for example 10/5minutes") from None
        return value


class TlsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cert: Path | None = None
    key: Path | None = None

    @model_validator(mode="after")
    def _check_pair(self) -> TlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls.cert and tls.key go together: give both or neither")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert is not None


# Ten years: longer than any registry keeps a push in flight, and short
# enough that `now - grace_period` is a date.
MAX_GRACE_PERIOD = 10 * 365 * 86400


class GcConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Seconds between garbage collections run by `dockyard serve`; 0: never.
    interval: int = Field(default=6 * 3600, ge=0)
    # Blobs, links and manifests younger than this are never collected: a
    # push in flight has this long to name its blobs in a manifest.
    grace_period: int = Field(default=3600, ge=0, le=MAX_GRACE_PERIOD)
    # Upload sessions older than this are purged with their staged bytes.
    upload_max_age: int = Field(default=7 * 86400, ge=60)
    # Also delete manifests no tag reaches (directly, through an index, or as
    # a referrer of one that is kept).
    untagged: bool = False


class LifecycleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Seconds between lifecycle-policy runs in `dockyard serve`; 0: never.
    interval: int = Field(default=3600, ge=0)


def _check_limit(value: str | None) -> str | None:
    from limits import parse

    if value is None or value == "unlimited":
        return value
    try:
        parse(value)
    except ValueError:
        raise ValueError(
            "expected COUNT/PERIOD such as 100/6hours, or unlimited"
        ) from None
    return value


class RateLimitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Pulls (manifest GETs) per window, per address; Docker Hub: 100/6hours.
    anonymous: str | None = None
    # Pulls per window per account; Docker Hub: 200/6hours.
    authenticated: str | None = None
    # Accounts (`alice`, `token:ci`) with a limit of their own or `unlimited`.
    overrides: dict[str, str] = Field(default_factory=dict)
    # Optional limits on pushes and on all requests, per address or account.
    pushes: str | None = None
    requests: str | None = None

    @field_validator("anonymous", "authenticated", "pushes", "requests")
    @classmethod
    def _check(cls, value: str | None) -> str | None:
        return _check_limit(value)

    @field_validator("overrides")
    @classmethod
    def _check_overrides(cls, value: dict[str, str]) -> dict[str, str]:
        for limit in value.values():
            _check_limit(limit)
        return value

    @property
    def enabled(self) -> bool:
        return any(
            (self.anonymous, self.authenticated, self.overrides, self.pushes)
        ) or bool(self.requests)


_NAMESPACE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")


class UpstreamConfig(BaseModel):
    """A registry whose images Dockyard caches as they are pulled."""

    model_config = ConfigDict(extra="forbid")

    # The namespace the upstream's repositories appear under: with `dockerhub`,
    # `dockerhub/library/debian` is the upstream's `library/debian`.
    name: str
    # The upstream's base URL, such as https://registry-1.docker.io.
    url: str
    # Credentials for the upstream's login; anonymous without them.
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    # Seconds a cached tag is served before a HEAD asks the upstream whether
    # it moved; manifests and blobs by digest never change and never expire.
    tag_ttl: int = Field(default=300, ge=0)
    # Also serve names without the namespace, as a `registry-mirrors` entry.
    mirror: bool = False
    # Registry hosts that clients name in `?ns=` for this upstream; defaults
    # to the URL's host (and docker.io for Docker Hub).
    hosts: list[str] = Field(default_factory=list)
    # Seconds to wait for the upstream to connect or send more bytes, and for
    # a whole answer other than a blob's body.
    timeout: float = Field(default=30.0, gt=0)
    # The largest blob fetched: an upstream sending more is cut off and
    # nothing is kept, so that no upstream can fill the disk.
    max_blob_bytes: int = Field(default=64 * 1024**3, gt=0)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAMESPACE.fullmatch(value):
            raise ValueError("expected one lowercase path component such as dockerhub")
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parsed = urlsplit(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("expected http(s)://HOST[:PORT]")
        if parsed.path.strip("/") or parsed.query:
            raise ValueError("expected the registry's base URL, without a path")
        if parsed.username is not None or parsed.password is not None:
            raise ValueError("put the login in username and password, not the URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _default_hosts(self) -> UpstreamConfig:
        if not self.hosts:
            parsed = urlsplit(self.url)
            self.hosts = [parsed.netloc]
            if parsed.hostname == "registry-1.docker.io":
                self.hosts.append("docker.io")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


class Config(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DOCKYARD_", env_nested_delimiter="__", extra="forbid"
    )

    listen: str = "127.0.0.1:5000"
    data_dir: Path = Path("dockyard-data")
    # Defaults to SQLite in `<data_dir>/dockyard.db`.
    database_url: str | None = None
    storage: StorageConfig = Field(default_factory=StorageConfig)
    # 0 picks one worker per CPU core.
    workers: int = Field(default=0, ge=0, le=64)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_manifest_bytes: int = Field(default=DEFAULT_MAX_MANIFEST_BYTES, gt=0)
    # Accept indexes that name manifests not pushed to the repository.
    sparse_indexes: bool = False
    auth: AuthConfig = Field(default_factory=AuthConfig)
    gc: GcConfig = Field(default_factory=GcConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
    rate_limits: RateLimitConfig = Field(default_factory=RateLimitConfig)
    tls: TlsConfig = Field(default_factory=TlsConfig)
    # Addresses or networks whose X-Forwarded-* headers are believed.
    trusted_proxies: list[str] = Field(default_factory=list)
    # Shared counters (login throttling, rate limits); in process when unset.
    redis_url: str | None = None
    # Pull-through caches of other registries.
    upstreams: list[UpstreamConfig] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags outrank the environment, which outranks the file.
        file_settings = InitSettingsSource(settings_cls, _file_values.get({}))
        return (init_settings, env_settings, file_settings)

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        schemes = ("redis://", "rediss://", "redis+unix://")
        if value is not None and not value.startswith(schemes):
            raise ValueError("expected redis://HOST:PORT/DB (or rediss://)")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an address or network") from None
        return value

    @field_validator("upstreams")
    @classmethod
    def _check_upstreams(cls, value: list[UpstreamConfig]) -> list[UpstreamConfig]:
        names = [upstream.name for upstream in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"two upstreams are named {name!r}")
        if sum(upstream.mirror for upstream in value) > 1:
            raise ValueError("only one upstream can be the mirror")
        return value

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir.absolute() / 'dockyard.db'}"

    @property
    def storage_path(self) -> Path:
        return (self.storage.path or self.data_dir / "storage").absolute()

    @property
    def signing_key_path(self) -> Path:
        return (
            self.auth.signing_key or self.data_dir / "token-signing-key.pem"
        ).absolute()

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


def split_listen(value: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` into its parts; ValueError says what is wrong."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected HOST:PORT, for example 127.0.0.1:5000")
    return host.strip("[]"), int(port)


def load_config(file: Path | None = None, **overrides: Any) -> Config:
    """Build the config from file, environment and overrides (None is unset)."""
    flags = {k: v for k, v in overrides.items() if v is not None}
    token = _file_values.set(_read_file(file) if file else {})
    try:
        return Config(**flags)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    finally:
        _file_values.reset(token)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong and where, on one line, without PyYAML's excerpt."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return " ".join(str(exc).split())
    mark = exc.problem_mark
    return f"{exc.problem} (line {mark.line + 1}, column {mark.column + 1})"


def _read_file(file: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        problem = _yaml_problem(exc)
        raise ConfigError(f"config file {file} is not valid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {file} must hold a mapping of keys to values")
    return data


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        value = _masked(key, error.get("input"))
        if error["type"] == "extra_forbidden":
            lines.append(f"unknown config key {key!r}")
        else:
            reason = error["msg"].removeprefix("Value error, ")
            lines.append(f"config key {key!r} has bad value {value!r}: {reason}")
    return "; ".join(lines)


# Keys whose values are secrets, never shown in an error.
_SECRET_KEYS = ("password", "secret")

# The login part of a URL such as postgresql://user:secret@host/db.
_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


def _masked(key: str, value: Any) -> Any:
    """The value of a bad config key as an error may show it: secrets, in
    the key itself, in a nested table or in a URL's login, replaced."""
    if any(word in key.rsplit(".", 1)[-1].lower() for word in _SECRET_KEYS):
        return "***"
    if isinstance(value, dict):
        return {name: _masked(str(name), item) for name, item in value.items()}
    if isinstance(value, list):
        return [_masked(key, item) for item in value]
    if isinstance(value, str):
        return _USERINFO.sub("***@", value)
    return value
