"""The HTTP edge: the OCI distribution API under /v2/ and its error table."""
