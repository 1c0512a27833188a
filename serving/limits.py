"""The service's default limits on a request (its options' defaults), importable without the
web stack, so ``sweepflow --help`` does not load FastAPI."""

#: Rows allowed in one request.
DEFAULT_MAX_ROWS = 10_000
#: Bytes allowed in one request body.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
