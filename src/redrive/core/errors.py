"""redrive's exception tree.

Cloud Tasks and Cloud Run errors (`google.api_core.exceptions`) are translated into these once,
at the adapter boundary (redrive.adapters.translate), so the rest of redrive reads the retry rule
from the class:
`TransientError` (and its `QuotaExceededError`) means "raise so the platform delivers again"; every
other class is permanent and is logged and acknowledged.
"""

from __future__ import annotations


class RedriveError(Exception):
    """Base of every error redrive raises on purpose."""


class TransientError(RedriveError):
    """A fault that may pass (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL...): retry later."""


class OutcomeUnknownError(TransientError):
    """A call that may or may not have taken effect: a RunTask that timed out or lost its
    connection, whose dispatch does not show in the task yet. Never repeated blindly."""


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
