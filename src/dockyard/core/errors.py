"""Domain errors, raised where a fault is found.

The HTTP edge maps each class to a spec error code and status in one table
(`dockyard.api.errors`); nothing here knows about HTTP.
"""


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


class ManifestTooLarge(RegistryError):
    pass


class PaginationInvalid(RegistryError):
    pass
