"""redrive's exception tree.

Cloud Tasks and Cloud Run errors (`google.api_core.exceptions`) are translated into these once,
at the adapter boundary, so the rest of redrive reads the retry rule from the class:
`TransientError` (and its `QuotaExceededError`) means "raise so the platform delivers again"; every
other class is permanent and is logged and acknowledged.
"""

from __future__ import annotations


class RedriveError(Exception):
    """Base of every error redrive raises on purpose."""


class TransientError(RedriveError):
    """A fault that may pass (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL...): retry later."""


class QuotaExceededError(TransientError):
    """RESOURCE_EXHAUSTED: a quota (the RunTask quota above all) is used up; back off and retry."""


class PermissionDeniedError(RedriveError):
    """The caller lacks a permission (or credentials): a configuration error."""


class NotFoundError(RedriveError):
    """The task (or queue, service, revision) does not exist."""


class AlreadyExistsError(RedriveError):
    """A resource with that name exists or existed recently (Cloud Tasks name de-duplication)."""


class InvalidRequestError(RedriveError):
    """The API refused the request as malformed or inapplicable (INVALID_ARGUMENT, ...)."""


class InvalidJobError(RedriveError):
    """A redrive job request body that is not a well-formed job."""


class RedeliverError(RedriveError):
    """Raised by handle_signal after logging, so that Pub/Sub delivers the message again."""


def translate(err: BaseException) -> RedriveError:
    """Map a google.api_core exception (or a RetryError wrapping one) to redrive's tree."""
    from google.api_core import exceptions as gexc

    if isinstance(err, RedriveError):
        return err
    if isinstance(err, gexc.RetryError):
        cause = err.cause
        if cause is not None and cause is not err:
            inner = translate(cause)
            return type(inner)(f"retries exhausted: {inner}")
        return TransientError(f"retries exhausted: {err}")
    text = _text(err)
    if isinstance(err, gexc.NotFound):
        return NotFoundError(text)
    if isinstance(err, gexc.AlreadyExists | gexc.Conflict):
        return AlreadyExistsError(text)
    if isinstance(err, gexc.PermissionDenied | gexc.Unauthenticated | gexc.Unauthorized):
        return PermissionDeniedError(text)
    if isinstance(err, gexc.ResourceExhausted | gexc.TooManyRequests):
        return QuotaExceededError(text)
    if isinstance(err, gexc.InvalidArgument | gexc.FailedPrecondition | gexc.OutOfRange):
        return InvalidRequestError(text)
    if isinstance(
        err,
        gexc.ServiceUnavailable
        | gexc.DeadlineExceeded
        | gexc.InternalServerError
        | gexc.Aborted
        | gexc.Cancelled
        | gexc.Unknown
        | gexc.GatewayTimeout,
    ):
        return TransientError(text)
    if isinstance(err, gexc.GoogleAPICallError):
        # Anything else the API answers (UNIMPLEMENTED, ...) will not change by retrying.
        return InvalidRequestError(text)
    # Connection-level failures outside api_core (rare: the gRPC layer maps them) are transient.
    return TransientError(text)


def _text(err: BaseException) -> str:
    message = getattr(err, "message", None) or str(err)
    code = getattr(err, "grpc_status_code", None)
    name = getattr(code, "name", None) or type(err).__name__
    return f"{name}: {message}"[:500]
