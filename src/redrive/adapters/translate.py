"""The one place google.api_core errors become redrive's (redrive.core.errors), by gRPC code.

Every adapter calls `translate` on what a client raised, so that the rest of redrive reads the
retry rule from the class alone.
"""

from __future__ import annotations

from redrive.core.errors import (
    AlreadyExistsError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RedriveError,
    TransientError,
)


def translate(err: BaseException) -> RedriveError:
    """Map a google.api_core exception (or a RetryError wrapping one) to redrive's tree.

    Anything that is neither an API answer nor a connection failure is raised again as it is:
    a programming error must not pass for a transient fault, and neither must the platform
    ending the request (functions-framework's RequestTimeoutException, raised asynchronously
    into the request's thread, has to reach the framework and end the request).
    """
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
    if isinstance(err, gexc.GoogleAPIError | OSError) or _is_grpc_error(err):
        # Connection-level failures outside the answer classes (rare: the client maps most).
        return TransientError(text)
    raise err


def _is_grpc_error(err: BaseException) -> bool:
    import grpc

    return isinstance(err, grpc.RpcError)


def _text(err: BaseException) -> str:
    message = getattr(err, "message", None) or str(err)
    code = getattr(err, "grpc_status_code", None)
    name = getattr(code, "name", None) or type(err).__name__
    return f"{name}: {message}"[:500]
