"""Client construction: the official Google clients, or the same clients on the local emulator.

Every client library is imported here on first use (they are the heaviest imports redrive has),
so a cold start that never calls Cloud Run never loads google-cloud-run. With an emulator host set
the clients talk gRPC without TLS or credentials, as the emulator expects.
"""

from __future__ import annotations

from typing import Any

from redrive.core.config import Settings


def tasks_module(api: str) -> Any:
    """google.cloud.tasks_v2 or tasks_v2beta3."""
    if api == "v2":
        from google.cloud import tasks_v2

        return tasks_v2
    from google.cloud import tasks_v2beta3

    return tasks_v2beta3


def tasks_client(settings: Settings) -> Any:
    """A CloudTasksClient of the configured API version."""
    tasks_mod = tasks_module(settings.tasks_api)
    if settings.tasks_emulator_host:
        import grpc

        transport_cls = tasks_mod.services.cloud_tasks.transports.CloudTasksGrpcTransport
        channel = grpc.insecure_channel(settings.tasks_emulator_host)
        return tasks_mod.CloudTasksClient(transport=transport_cls(channel=channel))
    return tasks_mod.CloudTasksClient()


def async_tasks_client(settings: Settings) -> Any:
    """A CloudTasksAsyncClient of the configured API version; call it inside the running loop
    (an asyncio gRPC channel belongs to the loop it was made in)."""
    tasks_mod = tasks_module(settings.tasks_api)
    if settings.tasks_emulator_host:
        import grpc

        transport_cls = tasks_mod.services.cloud_tasks.transports.CloudTasksGrpcAsyncIOTransport
        channel = grpc.aio.insecure_channel(settings.tasks_emulator_host)
        return tasks_mod.CloudTasksAsyncClient(transport=transport_cls(channel=channel))
    return tasks_mod.CloudTasksAsyncClient()


def run_clients(settings: Settings) -> tuple[Any, Any]:
    """(ServicesClient, RevisionsClient) of Cloud Run Admin v2."""
    from google.cloud import run_v2

    if settings.run_emulator_host:
        import grpc
        from google.cloud.run_v2.services.revisions.transports import RevisionsGrpcTransport
        from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

        channel = grpc.insecure_channel(settings.run_emulator_host)
        return (
            run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel)),
            run_v2.RevisionsClient(transport=RevisionsGrpcTransport(channel=channel)),
        )
    return run_v2.ServicesClient(), run_v2.RevisionsClient()
