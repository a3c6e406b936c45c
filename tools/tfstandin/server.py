"""gRPC servers of the stand-in providers, reachable by Terraform through TF_REATTACH_PROVIDERS
(a running provider Terraform attaches to instead of starting one) or through go-plugin's
handshake when Terraform starts the stand-in itself (filesystem mirror or dev_overrides)."""

from __future__ import annotations

import json
import os
import threading
from concurrent import futures
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import grpc

from tfstandin import protocol, schema
from tfstandin.archive import read_archive_file
from tfstandin.provider import Provider, generic_handler

GOOGLE = "registry.terraform.io/hashicorp/google"
ARCHIVE = "registry.terraform.io/hashicorp/archive"
TIME = "registry.terraform.io/hashicorp/time"
PROTOCOL_VERSION = 6
# go-plugin's handshake: Terraform starts a provider with this cookie in its environment.
MAGIC_COOKIE_KEY = "TF_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"


def build_providers(workdir: Path | None = None) -> dict[str, Provider]:
    """Every provider the stand-in serves, by registry address.

    `workdir` is the folder Terraform runs in, against which relative paths in the configuration
    resolve (default: this process's working directory, which is that folder when Terraform
    starts the stand-in itself).
    """
    return {
        GOOGLE: Provider(schema.load_google()),
        ARCHIVE: Provider(
            schema.load_complete("archive-provider-schema.json", "archive"),
            readers={"archive_file": partial(read_archive_file, base=workdir)},
        ),
        TIME: Provider(schema.load_complete("time-provider-schema.json", "time")),
    }


@dataclass
class Served:
    """One provider listening on a unix socket."""

    address: str
    provider: Provider
    socket: Path
    server: grpc.Server
    stopped: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        self.server.stop(grace=None)
        self.stopped.set()


def _control_handlers(served: list[Served]) -> list[grpc.GenericRpcHandler]:
    """go-plugin's controller (Shutdown) and the gRPC health check go-plugin pings."""

    def shutdown(request: bytes, context: grpc.ServicerContext) -> bytes:
        threading.Thread(target=served[0].stop, daemon=True).start()
        return b""

    def health(request: bytes, context: grpc.ServicerContext) -> bytes:
        return bytes(protocol.new("HealthCheckResponse", status=1).SerializeToString())

    def raw(fn: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=bytes, response_serializer=bytes
        )

    return [
        grpc.method_handlers_generic_handler(
            protocol.CONTROLLER_SERVICE, {"Shutdown": raw(shutdown)}
        ),
        grpc.method_handlers_generic_handler(protocol.HEALTH_SERVICE, {"Check": raw(health)}),
    ]


def serve_one(address: str, provider: Provider, socket: Path) -> Served:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[("grpc.max_send_message_length", 64 << 20)],
    )
    holder: list[Served] = []
    server.add_generic_rpc_handlers([generic_handler(provider), *_control_handlers(holder)])
    if socket.exists():
        socket.unlink()
    server.add_insecure_port(f"unix:{socket}")
    served = Served(address, provider, socket, server)
    holder.append(served)
    server.start()
    return served


def serve_all(
    folder: Path, providers: dict[str, Provider] | None = None, workdir: Path | None = None
) -> list[Served]:
    providers = providers if providers is not None else build_providers(workdir)
    return [
        serve_one(address, provider, folder / f"{address.rsplit('/', 1)[-1]}.sock")
        for address, provider in providers.items()
    ]


def reattach_value(served: list[Served]) -> str:
    """The TF_REATTACH_PROVIDERS value for these servers ("Test": Terraform never stops them)."""
    return json.dumps(
        {
            s.address: {
                "Protocol": "grpc",
                "ProtocolVersion": PROTOCOL_VERSION,
                "Pid": os.getpid(),
                "Test": True,
                "Addr": {"Network": "unix", "String": str(s.socket)},
            }
            for s in served
        }
    )


def handshake_line(served: Served) -> str:
    """go-plugin's handshake line: core version, protocol version, network, address, gRPC."""
    return f"1|{PROTOCOL_VERSION}|unix|{served.socket}|grpc|"
