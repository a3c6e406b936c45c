"""gRPC's own log lines ("Got goaway", "chttp2_transport.cc", the absl preamble) are not for
operators: the command line keeps them quiet unless asked for, and the demo passes the same
settings on to the processes it starts. A module of its own so both can import it without
importing each other."""

from __future__ import annotations

import os

GRPC_QUIET = {"GRPC_VERBOSITY": "ERROR", "GRPC_TRACE": ""}


def quiet_grpc() -> None:
    """Set GRPC_QUIET where the environment does not say otherwise. gRPC reads these when it
    first starts: call this before anything creates a client."""
    for key, value in GRPC_QUIET.items():
        os.environ.setdefault(key, value)
