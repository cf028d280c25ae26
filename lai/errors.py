"""The one error hierarchy of lai.

Every error a user can see maps to an OpenAI-shaped body
``{"error": {"message", "type", "code", "param"}}`` and an HTTP status::

    LaiError (500, api_error)
    ├── InvalidRequest (400, invalid_request_error)
    │   ├── ContextLengthExceeded (400, code context_length_exceeded)
    │   ├── ModelNotFound (404, code model_not_found)
    │   ├── UpstreamRejected (the upstream's 4xx status, code upstream_rejected)
    │   └── RequestTooLarge (413, code request_too_large)
    ├── AuthenticationFailed (401, authentication_error / invalid_api_key)
    ├── PermissionDenied (403, permission_error)
    ├── NotFound (404, invalid_request_error / not_found)
    ├── RateLimited (429, rate_limit_error, Retry-After): a key's own limits
    │   ├── KeyQueueFull (code key_queue_full: the key's max_queued are waiting)
    │   ├── RateLimitExceeded (code rate_limit_exceeded: the key's rpm or tpm)
    │   └── BudgetExceeded (code budget_exceeded: the key's budget for the period)
    ├── ServiceUnavailable (503, service_unavailable)
    │   ├── CapacityExceeded (code provider_capacity_exceeded, Retry-After)
    │   ├── NoHealthyProvider (code no_healthy_provider)
    │   └── UpstreamPoolExhausted (code upstream_pool_exhausted, Retry-After)
    ├── UpstreamError (502, api_error / upstream_error)
    │   └── UpstreamTimeout (504, code upstream_timeout)
    └── ConfigError (a broken config file; the CLI prints it and exits 2)

The proxy renders these in one place (``lai.proxy.errors``); the TUI in one notify helper.
"""

from __future__ import annotations

from typing import Any


class LaiError(Exception):
    """Base class: carries the HTTP status and the OpenAI error ``type`` and ``code``."""

    status: int = 500
    type: str = "api_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI error body."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "code": self.code,
                "param": self.param,
            }
        }

    def headers(self) -> dict[str, str]:
        """Extra response headers (``Retry-After`` in whole seconds when known)."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, int(self.retry_after)))}


class InvalidRequest(LaiError):
    status = 400
    type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class ModelNotFound(InvalidRequest):
    status = 404
    code = "model_not_found"


class RequestTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


class UpstreamRejected(InvalidRequest):
    """The upstream refused the request as the client's mistake (a 4xx other than 429).

    The client gets the upstream's status and message; the provider is not blamed.
    """

    code = "upstream_rejected"

    def __init__(self, message: str, *, status: int = 400, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.status = status


class NotFound(InvalidRequest):
    status = 404
    code = "not_found"


class AuthenticationFailed(LaiError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(LaiError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class RateLimited(LaiError):
    """A key's own limit refused the request; ``retry_after`` says when it may pass."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class KeyQueueFull(RateLimited):
    code = "key_queue_full"


class RateLimitExceeded(RateLimited):
    code = "rate_limit_exceeded"


class BudgetExceeded(RateLimited):
    code = "budget_exceeded"


class ServiceUnavailable(LaiError):
    status = 503
    type = "service_unavailable"


class CapacityExceeded(ServiceUnavailable):
    code = "provider_capacity_exceeded"


class NoHealthyProvider(ServiceUnavailable):
    code = "no_healthy_provider"


class UpstreamPoolExhausted(ServiceUnavailable):
    """lai's own pool of upstream connections stayed full: lai's condition, not the
    provider's, so it is never counted against the provider's health."""

    code = "upstream_pool_exhausted"


class UpstreamError(LaiError):
    status = 502
    type = "api_error"
    code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class ConfigError(LaiError):
    """A config file that cannot be used. ``str(err)`` is one line naming file, table and key."""

    status = 500
    type = "config_error"
