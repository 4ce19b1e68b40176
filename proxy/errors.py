"""Errors the proxy raises, each knowing its HTTP status and its wire error type.

    SpendgateError
    ├── ConfigError                 bad configuration; raised at start-up, names the key
    ├── TokenizerDataError          a shipped BPE file is missing or fails its sha256 (proxy._bpe)
    └── ProxyError                  ends one request with an error response
        ├── InvalidRequest          400: malformed JSON, missing model, unknown model (reject mode)
        ├── Unauthorized            401: missing, unknown or expired virtual key
        ├── ModelNotAllowed         403: the model is outside the key's allow-list
        ├── PayloadTooLarge         413: body over server.max_body_bytes
        ├── NotFound                404: no such route or provider
        ├── BudgetBlocked           429: a hard budget is exhausted (no retry)
        ├── RateLimitedError        429: RPM/TPM limit hit (retry after)
        ├── Unavailable             503: the proxy cannot take the call safely now
        └── UpstreamError           the provider could not be reached
            ├── UpstreamConnectError  502
            └── UpstreamTimeout       504

Lower-level errors (aiohttp, OS) are translated once, in ``proxy.upstream``. How an error is
rendered (OpenAI's, Anthropic's or Gemini's JSON) is the provider adapter's business.
"""

from __future__ import annotations

__all__ = [
    "BudgetBlocked",
    "ConfigError",
    "InvalidRequest",
    "ModelNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "ProxyError",
    "RateLimitedError",
    "SpendgateError",
    "Unauthorized",
    "Unavailable",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamTimeout",
    "connect_failed",
    "connect_timed_out",
    "ended_early",
    "failed",
    "read_timed_out",
]


class SpendgateError(Exception):
    """Base of every error spendgate raises on purpose."""


class ConfigError(SpendgateError):
    """The configuration is invalid; the message starts with the offending key."""


class ProxyError(SpendgateError):
    """An error that ends one request with an error response in the caller's wire format."""

    status = 500
    error_type = "server_error"  # OpenAI `error.type`
    code: str | None = None  # OpenAI `error.code`
    outcome = "upstream_error"  # ledger outcome when the request is recorded

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or {}


class InvalidRequest(ProxyError):
    status = 400
    error_type = "invalid_request_error"
    outcome = "invalid_request"


class Unauthorized(ProxyError):
    status = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"
    outcome = "unauthorized"


class ModelNotAllowed(ProxyError):
    status = 403
    error_type = "permission_error"
    code = "model_not_allowed"
    outcome = "invalid_request"


class NotFound(ProxyError):
    status = 404
    error_type = "invalid_request_error"
    code = "not_found"
    outcome = "invalid_request"


class PayloadTooLarge(ProxyError):
    status = 413
    error_type = "invalid_request_error"
    code = "request_too_large"
    outcome = "invalid_request"


class BudgetBlocked(ProxyError):
    status = 429
    error_type = "budget_exceeded"
    code = "budget_exceeded"
    outcome = "budget_blocked"


class RateLimitedError(ProxyError):
    status = 429
    error_type = "requests"
    code = "rate_limit_exceeded"
    outcome = "rate_limited"


class Unavailable(ProxyError):
    status = 503
    error_type = "server_error"
    code = "service_unavailable"
    outcome = "unavailable"


class UpstreamError(ProxyError):
    status = 502
    error_type = "server_error"
    code = "upstream_error"
    outcome = "upstream_error"


class UpstreamConnectError(UpstreamError):
    status = 502
    code = "upstream_connect_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"
    outcome = "timeout"


# The wording of upstream failures, shared by every transport's translation.
def connect_failed(host: str) -> UpstreamConnectError:
    return UpstreamConnectError(f"Could not connect to the upstream provider ({host}).")


def connect_timed_out(host: str) -> UpstreamTimeout:
    return UpstreamTimeout(f"Timed out connecting to the upstream provider ({host}).")


def read_timed_out(host: str) -> UpstreamTimeout:
    return UpstreamTimeout(f"The upstream provider ({host}) did not answer in time.")


def ended_early(host: str) -> UpstreamError:
    return UpstreamError(f"The upstream provider ({host}) ended the response early.")


def failed(host: str, exc: BaseException) -> UpstreamError:
    return UpstreamError(f"Upstream request to {host} failed: {type(exc).__name__}.")
