"""A local Cloud Tasks service (v2 and v2beta3, gRPC and REST) with a Cloud Run Admin fake.

Standalone: it depends on the Google client libraries only, nothing of redrive. Start it with
`cloudtasks-emulator` (or `python -m cloudtasks_emulator`), or in process with `Emulator`.
"""

from __future__ import annotations

from cloudtasks_emulator.clients import tasks_client
from cloudtasks_emulator.control import Control, RunRecord
from cloudtasks_emulator.errors import RpcError
from cloudtasks_emulator.oidc import TokenSigner
from cloudtasks_emulator.quota import Quotas
from cloudtasks_emulator.server import Emulator, serve

__all__ = [
    "Control",
    "Emulator",
    "Quotas",
    "RpcError",
    "RunRecord",
    "TokenSigner",
    "serve",
    "tasks_client",
]
