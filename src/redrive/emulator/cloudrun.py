"""Cloud Run Admin API v2 fake (Services, Revisions) for the revision fix check.

Placeholder with the agreed interface; the implementation replaces it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc


class CloudRunFake:
    def __init__(self, control: Any, clock: Any) -> None:
        self.control = control
        self.clock = clock

    def grpc_handlers(self) -> list[grpc.GenericRpcHandler]:
        """Generic handlers for google.cloud.run.v2.Services and google.cloud.run.v2.Revisions."""
        return []

    def deploy(self, service: str, uri: str | None = None, at: datetime | None = None) -> str:
        """Create `service` if needed and a new ready revision now (or `at`); return its name."""
        raise NotImplementedError
