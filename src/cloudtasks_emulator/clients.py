"""Official google-cloud-tasks clients wired to the emulator."""

from __future__ import annotations

from typing import Any

import grpc
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2, tasks_v2beta3

_MODULES = {"v2": tasks_v2, "v2beta3": tasks_v2beta3}


def tasks_client(target: str, api: str = "v2beta3", transport: str = "grpc") -> Any:
    """A CloudTasksClient of `api` for the emulator at `target`.

    grpc: `target` is "host:port" (CLOUD_TASKS_EMULATOR_HOST), reached over an insecure channel
    (`api_endpoint` alone would use TLS). rest: `target` is "http://host:port" (or "host:port"),
    with anonymous credentials.
    """
    module = _MODULES.get(api)
    if module is None:
        raise ValueError(f"api must be one of {sorted(_MODULES)}, got {api!r}")
    client_cls = module.CloudTasksClient
    if transport == "grpc":
        address = target.removeprefix("http://")
        transport_cls = client_cls.get_transport_class("grpc")
        channel = grpc.insecure_channel(address)
        return client_cls(transport=transport_cls(channel=channel))
    if transport == "rest":
        endpoint = target if target.startswith("http") else f"http://{target}"
        return client_cls(
            transport="rest",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint},
        )
    raise ValueError(f"transport must be 'grpc' or 'rest', got {transport!r}")
