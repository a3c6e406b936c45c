"""The one error type of the emulator's service layer, shared by the gRPC and REST front ends."""

from __future__ import annotations

import grpc


class RpcError(Exception):
    """A call answered with a non-OK status; each front end translates it (gRPC, HTTP JSON)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
