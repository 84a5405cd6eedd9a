"""Domain errors, raised where a fault is found.

The HTTP edge maps each class to a spec error code and status in one table
(`dockyard.api.errors`); nothing here knows about HTTP.
"""

from collections.abc import Sequence


class RegistryError(Exception):
    """A fault the client can understand and act on."""

    def __init__(self, message: str, detail: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class NameInvalid(RegistryError):
    pass


class NameUnknown(RegistryError):
    pass


class TagInvalid(RegistryError):
    pass


class DigestInvalid(RegistryError):
    pass


class BlobUnknown(RegistryError):
    pass


class UploadUnknown(RegistryError):
    pass


class UploadInvalid(RegistryError):
    pass


class UploadOffsetMismatch(RegistryError):
    """A chunk did not start where the upload ends; nothing was appended."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message, {"size": size})
        self.size = size


class RangeNotSatisfiable(RegistryError):
    """A blob range outside the blob, or one that cannot be parsed."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message, {"size": size})
        self.size = size


class SizeInvalid(RegistryError):
    pass


class ManifestUnknown(RegistryError):
    pass


class ManifestInvalid(RegistryError):
    pass


class ManifestBlobUnknown(RegistryError):
    pass


def missing_references(
    repository: str, kind: str, missing: Sequence[object]
) -> ManifestBlobUnknown:
    shown = ", ".join(str(d) for d in missing[:5])
    return ManifestBlobUnknown(
        f"manifest references {kind}s not in repository {repository}: "
        f"{shown}; push them first",
        {"digests": [str(d) for d in missing]},
    )


class ManifestTooLarge(RegistryError):
    pass


class PaginationInvalid(RegistryError):
    pass


class Unauthorized(RegistryError):
    """No usable credentials: the client should log in and try again.

    `scope` is what the request needed, for the challenge; `reason` is the
    RFC 6750 error (`invalid_token`, `insufficient_scope`) when there is one.
    """

    def __init__(self, message: str, scope: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.scope = scope
        self.reason = reason


class Denied(RegistryError):
    """The caller is known but may not do this."""


class TagImmutable(Denied):
    """A push would move a tag that the repository's settings freeze."""


class QuotaExceeded(Denied):
    """A push would take a namespace past its quota."""


class TooManyRequests(RegistryError):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ScopeInvalid(RegistryError):
    pass


class LifecyclePolicyUnknown(RegistryError):
    pass


class LifecyclePolicyInvalid(RegistryError):
    """A lifecycle policy document that breaks the format; `detail.faults`
    lists every fault."""


class UpstreamUnavailable(RegistryError):
    """A pull-through cache's upstream failed, and nothing cached can stand in."""
