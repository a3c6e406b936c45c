"""Local Cloud Tasks (v2, v2beta3; gRPC and REST) and Cloud Run Admin emulator."""

from __future__ import annotations

from redrive.emulator.clients import tasks_client
from redrive.emulator.control import Control, RunRecord
from redrive.emulator.errors import RpcError
from redrive.emulator.server import Emulator, serve

__all__ = ["Control", "Emulator", "RpcError", "RunRecord", "serve", "tasks_client"]
