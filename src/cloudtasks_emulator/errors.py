"""The one error type of the emulator's service layer, shared by the gRPC and REST front ends."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

_RPC_CODE = {code: code.value[0] for code in grpc.StatusCode}


class RpcError(Exception):
    """A call answered with a non-OK status; each front end translates it (gRPC, HTTP JSON).

    `details` are google.rpc error detail messages (ErrorInfo, Help, ...), sent as the real
    service sends them: in `grpc-status-details-bin` over gRPC, in `error.details` over REST.
    """

    def __init__(
        self, code: grpc.StatusCode, message: str, details: Sequence[Message] = ()
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = tuple(details)

    def status_proto(self) -> status_pb2.Status:
        status = status_pb2.Status(code=_RPC_CODE[self.code], message=self.message)
        for detail in self.details:
            packed = any_pb2.Any()
            packed.Pack(detail)
            status.details.append(packed)
        return status
