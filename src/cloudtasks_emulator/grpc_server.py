"""gRPC front end: google.cloud.tasks.v2.CloudTasks and ...v2beta3.CloudTasks as generic handlers
over the message types google-cloud-tasks ships (no generated stubs, no extra packages)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from google.cloud import tasks_v2, tasks_v2beta3
from google.cloud.location import locations_pb2
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.protobuf import empty_pb2
from grpc_status import rpc_status

from cloudtasks_emulator.errors import RpcError
from cloudtasks_emulator.service import CloudTasksService


def _types(module: Any) -> dict[str, tuple[Any, Any]]:
    """RPC name → (request pb class, response pb class)."""
    m = module
    return {
        "ListQueues": (m.ListQueuesRequest.pb(), m.ListQueuesResponse.pb()),
        "GetQueue": (m.GetQueueRequest.pb(), m.Queue.pb()),
        "CreateQueue": (m.CreateQueueRequest.pb(), m.Queue.pb()),
        "UpdateQueue": (m.UpdateQueueRequest.pb(), m.Queue.pb()),
        "DeleteQueue": (m.DeleteQueueRequest.pb(), empty_pb2.Empty),
        "PurgeQueue": (m.PurgeQueueRequest.pb(), m.Queue.pb()),
        "PauseQueue": (m.PauseQueueRequest.pb(), m.Queue.pb()),
        "ResumeQueue": (m.ResumeQueueRequest.pb(), m.Queue.pb()),
        "ListTasks": (m.ListTasksRequest.pb(), m.ListTasksResponse.pb()),
        "GetTask": (m.GetTaskRequest.pb(), m.Task.pb()),
        "CreateTask": (m.CreateTaskRequest.pb(), m.Task.pb()),
        "DeleteTask": (m.DeleteTaskRequest.pb(), empty_pb2.Empty),
        "RunTask": (m.RunTaskRequest.pb(), m.Task.pb()),
        "GetIamPolicy": (iam_policy_pb2.GetIamPolicyRequest, policy_pb2.Policy),
        "SetIamPolicy": (iam_policy_pb2.SetIamPolicyRequest, policy_pb2.Policy),
        "TestIamPermissions": (
            iam_policy_pb2.TestIamPermissionsRequest,
            iam_policy_pb2.TestIamPermissionsResponse,
        ),
    }


log = logging.getLogger(__name__)

_PLUS = {"v2": tasks_v2, "v2beta3": tasks_v2beta3}
_UNSUPPORTED = ("BatchCreateTasks", "BatchDeleteTasks", "UpdateCmekConfig", "GetCmekConfig")


def abort(context: grpc.ServicerContext, err: RpcError) -> None:
    """End the call with the error, its details in `grpc-status-details-bin` when it has any."""
    if err.details:
        context.abort_with_status(rpc_status.to_status(err.status_proto()))
    context.abort(err.code, err.message)


def _handler(
    service: CloudTasksService, api: str, method: str
) -> Callable[[Any, grpc.ServicerContext], Any]:
    # The service takes and answers raw protobuf: no proto-plus wrapping on the hot path.
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return service.call(api, method, request)
        except RpcError as err:
            abort(context, err)
        except Exception as err:  # a bug in the emulator: say so loudly, answer INTERNAL
            log.exception("emulator failure in %s.%s", api, method)
            context.abort(grpc.StatusCode.INTERNAL, f"emulator error: {type(err).__name__}: {err}")
        raise AssertionError("unreachable: abort raises")

    return handle


def _raw_handler(
    service: CloudTasksService, api: str, method: str
) -> Callable[[bytes, grpc.ServicerContext], bytes]:
    def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            service.call(api, method, request)
        except RpcError as err:
            abort(context, err)
        context.abort(grpc.StatusCode.INTERNAL, f"{method} answered without an error")
        raise AssertionError("unreachable: abort raises")

    return handle


def cloud_tasks_handlers(service: CloudTasksService) -> list[grpc.GenericRpcHandler]:
    handlers: list[grpc.GenericRpcHandler] = []
    for api, module in _PLUS.items():
        methods: dict[str, grpc.RpcMethodHandler] = {}
        for method, (req_pb, resp_pb) in _types(module).items():
            methods[method] = grpc.unary_unary_rpc_method_handler(
                _handler(service, api, method),
                request_deserializer=req_pb.FromString,
                response_serializer=resp_pb.SerializeToString,
            )
        for method in _UNSUPPORTED:
            methods[method] = grpc.unary_unary_rpc_method_handler(
                _raw_handler(service, api, method),
                request_deserializer=None,
                response_serializer=None,
            )
        handlers.append(
            grpc.method_handlers_generic_handler(f"google.cloud.tasks.{api}.CloudTasks", methods)
        )
    # The location mixin every Cloud Tasks client carries (list_locations, get_location): one
    # gRPC service for both versions, answered as v2.
    locations = {
        "ListLocations": (locations_pb2.ListLocationsRequest, locations_pb2.ListLocationsResponse),
        "GetLocation": (locations_pb2.GetLocationRequest, locations_pb2.Location),
    }
    handlers.append(
        grpc.method_handlers_generic_handler(
            "google.cloud.location.Locations",
            {
                method: grpc.unary_unary_rpc_method_handler(
                    _handler(service, "v2", method),
                    request_deserializer=req.FromString,
                    response_serializer=resp.SerializeToString,
                )
                for method, (req, resp) in locations.items()
            },
        )
    )
    return handlers


def make_server(
    host: str,
    port: int,
    handlers: list[grpc.GenericRpcHandler],
    max_workers: int = 16,
) -> tuple[grpc.Server, int]:
    """An insecure gRPC server bound to host:port (0 = a free port); returns it and the port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="emulator-grpc"),
        handlers=handlers,
        options=[("grpc.so_reuseport", 0)],
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC server to {host}:{port}")
    return server, bound
