"""The registry's domain: names, digests, manifests, errors and operations.

Nothing in this package imports a web framework, an ORM or a storage SDK; the
other layers depend on it, never the reverse.
"""
