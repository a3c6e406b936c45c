"""REST (HTTP/JSON) front end of the emulator: the real API paths for v2 and v2beta3.

Each request is turned into the same proto-plus request message the gRPC front end receives
(path fields, body and query parameters mapped as the API's HTTP rules say, parsed with the proto3
JSON mapping), handed to `CloudTasksService.call`, and the answer is written back as proto3 JSON
in camelCase. Errors become Google's JSON error body. The same port also serves the emulator's
control endpoints under `/_emulator/`, so a standalone emulator can be driven from another process.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import enum
import json
import logging
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import grpc
from google.cloud import tasks_v2, tasks_v2beta3
from google.cloud.location import locations_pb2
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from cloudtasks_emulator.errors import RpcError
from cloudtasks_emulator.oidc import TokenSigner
from cloudtasks_emulator.service import BufferTaskRequest

log = logging.getLogger(__name__)

API_VERSIONS = ("v2", "v2beta3")

# gRPC status → HTTP status, as Google's HTTP/JSON gateway maps them.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

# Query parameters every Google API accepts that do not map onto request fields.
_SYSTEM_PARAMS = frozenset(
    {
        "alt",
        "$alt",
        "key",
        "prettyPrint",
        "fields",
        "$fields",
        "quotaUser",
        "callback",
        "upload_protocol",
        "uploadType",
        "access_token",
        "$.xgafv",
        "oauth_token",
        "userIp",
    }
)

# Methods outside the emulator's scope, answered UNIMPLEMENTED with a clear message.
_UNIMPLEMENTED = {
    "GetIamPolicy": "IAM is not emulated: every caller may do everything",
    "SetIamPolicy": "IAM is not emulated: every caller may do everything",
    "TestIamPermissions": "IAM is not emulated: every caller may do everything",
    "BatchCreateTasks": "batch task creation is not emulated: create tasks one by one",
    "BatchDeleteTasks": "batch task deletion is not emulated: delete tasks one by one",
    "GetCmekConfig": "customer-managed encryption keys are not emulated",
    "UpdateCmekConfig": "customer-managed encryption keys are not emulated",
}


class TasksService(Protocol):
    def call(self, api: str, method: str, request: Any) -> Any: ...


class EmulatorControl(Protocol):
    def fail(
        self,
        method: str,
        code: grpc.StatusCode,
        times: int = 1,
        message: str | None = None,
        after: int = 0,
    ) -> None: ...

    def delay(self, method: str, seconds: float, times: int = 1) -> None: ...

    def clear(self) -> None: ...

    def call_counts(self) -> Mapping[str, int]: ...

    def run_log(self) -> Iterable[Any]: ...

    def reset_counters(self) -> None: ...


class Deployer(Protocol):
    def deploy(self, service: str, uri: str | None = None, at: datetime | None = None) -> str: ...


@dataclasses.dataclass(frozen=True)
class _Route:
    """One HTTP rule: `path_fields` are the request fields bound from the path (dotted for nested
    ones), `body` is `*` (whole request), a field name, or None (no body)."""

    http_method: str
    pattern: re.Pattern[str]
    rpc: str
    path_fields: tuple[str, ...]
    body: str | None


_SEG = r"[^/]+"  # project ids may hold ':' (domain-scoped), so only '/' ends a segment
_ID = r"[^/:]+"  # the last segment of a path with a custom verb
_LOC = rf"projects/{_SEG}/locations/{_ID}"
_QUEUE = rf"{_LOC}/queues/{_ID}"
_TASK = rf"{_QUEUE}/tasks/{_ID}"


def _routes() -> list[_Route]:
    def route(
        method: str, path: str, rpc: str, fields: tuple[str, ...], body: str | None
    ) -> _Route:
        # `(...)` groups in `path` bind, in order, to `fields`.
        return _Route(method, re.compile(rf"/(v2|v2beta3)/{path}"), rpc, fields, body)

    return [
        route("GET", rf"(projects/{_ID})/locations", "ListLocations", ("name",), None),
        route("GET", rf"({_LOC})", "GetLocation", ("name",), None),
        route("GET", rf"({_LOC})/queues", "ListQueues", ("parent",), None),
        route("POST", rf"({_LOC})/queues", "CreateQueue", ("parent",), "queue"),
        route("GET", rf"({_QUEUE})", "GetQueue", ("name",), None),
        route("PATCH", rf"({_QUEUE})", "UpdateQueue", ("queue.name",), "queue"),
        route("DELETE", rf"({_QUEUE})", "DeleteQueue", ("name",), None),
        route("POST", rf"({_QUEUE}):pause", "PauseQueue", ("name",), "*"),
        route("POST", rf"({_QUEUE}):resume", "ResumeQueue", ("name",), "*"),
        route("POST", rf"({_QUEUE}):purge", "PurgeQueue", ("name",), "*"),
        route("POST", rf"({_QUEUE}):getIamPolicy", "GetIamPolicy", ("resource",), "*"),
        route("POST", rf"({_QUEUE}):setIamPolicy", "SetIamPolicy", ("resource",), "*"),
        route("POST", rf"({_QUEUE}):testIamPermissions", "TestIamPermissions", ("resource",), "*"),
        route("GET", rf"({_QUEUE})/tasks", "ListTasks", ("parent",), None),
        route("POST", rf"({_QUEUE})/tasks", "CreateTask", ("parent",), "*"),
        route("POST", rf"({_QUEUE})/tasks:batchCreate", "BatchCreateTasks", ("parent",), "*"),
        route("POST", rf"({_QUEUE})/tasks:batchDelete", "BatchDeleteTasks", ("parent",), "*"),
        route("GET", rf"({_TASK})", "GetTask", ("name",), None),
        route("DELETE", rf"({_TASK})", "DeleteTask", ("name",), None),
        route("POST", rf"({_TASK}):run", "RunTask", ("name",), "*"),
        route("POST", rf"({_QUEUE})/tasks/?:buffer", "BufferTask", ("queue",), "*"),
        route("POST", rf"({_QUEUE})/tasks/({_ID}):buffer", "BufferTask", ("queue", "taskId"), "*"),
        route("GET", rf"({_LOC}/cmekConfig)", "GetCmekConfig", ("name",), None),
        route("PATCH", rf"({_LOC}/cmekConfig)", "UpdateCmekConfig", ("cmekConfig.name",), "*"),
    ]


ROUTES = _routes()

_IDENTITY_PATHS = frozenset(
    {
        "/.well-known/openid-configuration",
        "/oauth2/v3/certs",
        "/oauth2/v1/certs",
        "/oauth2/v3/tokeninfo",
    }
)


class HttpError(Exception):
    """An answer other than 200, with Google's error body."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def error_body(
    code: grpc.StatusCode, message: str, details: Sequence[Message] = ()
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": HTTP_STATUS[code], "message": message, "status": code.name}
    if details:  # as Google's REST APIs send them: each detail with its "@type"
        packed = []
        for detail in details:
            holder = any_pb2.Any()
            holder.Pack(detail)
            packed.append(json_format.MessageToDict(holder))
        error["details"] = packed
    return {"error": error}


def _json_response(payload: Any, status: int = 200, *, pretty: bool = True) -> Response:
    # Google pretty-prints unless the query says prettyPrint=false.
    text = json.dumps(payload, indent=2) if pretty else json.dumps(payload, separators=(",", ":"))
    return Response(
        text + "\n",
        status=status,
        content_type="application/json; charset=UTF-8",
    )


def _error_response(
    code: grpc.StatusCode, message: str, details: Sequence[Message] = ()
) -> Response:
    return _json_response(error_body(code, message, details), HTTP_STATUS[code])


def _types_module(api: str) -> Any:
    return tasks_v2.types if api == "v2" else tasks_v2beta3.types


def _set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        child = target.get(key)
        if not isinstance(child, dict):
            child = {}
            target[key] = child
        target = child
    target[leaf] = value


def _read_json_body(request: Request) -> dict[str, Any]:
    raw = request.get_data(cache=False)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise HttpError(
            grpc.StatusCode.INVALID_ARGUMENT, f"Invalid JSON payload received. {err}"
        ) from None
    if not isinstance(body, dict):
        raise HttpError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "Invalid JSON payload received. The request body must be a JSON object.",
        )
    return body


def _ints_for_enums(request: Request) -> bool:
    """`$alt=json;enum-encoding=int` (what the Python REST transport sends) asks for enums as
    numbers; plain `alt=json` or nothing means enum names."""
    for key in ("$alt", "alt"):
        for value in request.args.getlist(key):
            options = [part.strip() for part in value.split(";")]
            if "enum-encoding=int" in options:
                return True
    return False


def _to_jsonable(value: Any) -> Any:
    """Control-endpoint answers: whatever Control returns, as plain JSON."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _to_jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, collections.deque)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, grpc.StatusCode):
        return value.name
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _status_code(value: Any) -> grpc.StatusCode:
    """A gRPC status given by name ("UNAVAILABLE") or number (14)."""
    for code in grpc.StatusCode:
        number = code.value[0]
        if value == code.name or (
            isinstance(value, int) and not isinstance(value, bool) and value == number
        ):
            return code
    raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, f"unknown status code: {value!r}")


class _QuietHandler(WSGIRequestHandler):
    """No access log on stdout; requests are kept in `RestServer.requests` instead."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class RestServer:
    """Serves the Cloud Tasks REST API (and the emulator's control endpoints) in a thread."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        service: Any,
        control: Any,
        cloudrun: Any,
        signer: TokenSigner | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.signer = signer or TokenSigner()
        self.service: TasksService = service
        self.control: EmulatorControl = control
        self.cloudrun: Deployer = cloudrun
        # The last requests seen (method, path with decoded query, HTTP status): shows what a
        # client such as gcloud really calls.
        self.requests: collections.deque[tuple[str, str, int]] = collections.deque(maxlen=1000)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._control_routes: dict[tuple[str, str], Callable[[Request], Any]] = {
            ("POST", "/_emulator/faults"): self._post_fault,
            ("DELETE", "/_emulator/faults"): self._clear_faults,
            ("GET", "/_emulator/calls"): self._get_calls,
            ("DELETE", "/_emulator/calls"): self._reset_calls,
            ("GET", "/_emulator/runs"): self._get_runs,
            ("POST", "/_emulator/run/deploy"): self._deploy,
            ("GET", "/_emulator/health"): lambda _request: {"ok": True},
        }

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Bind (port 0 picks a free port; `self.port` is the bound port afterwards) and serve."""
        if self._server is not None:
            raise RuntimeError("RestServer already started")
        server = make_server(
            self.host, self.port, self._wsgi, threaded=True, request_handler=_QuietHandler
        )
        self._server = server
        self.port = server.server_port
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},  # how long stop() may wait
            name=f"emulator-rest-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -- WSGI ----------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        response = self.handle(request)
        query = urllib.parse.unquote(request.query_string.decode("latin-1"))
        self.requests.append(
            (request.method, request.path + (f"?{query}" if query else ""), response.status_code)
        )
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        try:
            if request.path.startswith("/_emulator/"):
                return self._handle_control(request)
            if request.method == "GET" and request.path in _IDENTITY_PATHS:
                return self._handle_identity(request)
            return self._handle_api(request)
        except HttpError as err:
            return _error_response(err.code, err.message)
        except RpcError as err:
            return _error_response(err.code, err.message, err.details)
        except Exception as err:  # a bug in the emulator: say so rather than drop the socket
            log.exception("emulator REST handler failed")
            return _error_response(grpc.StatusCode.INTERNAL, f"emulator error: {err!r}")

    # -- Cloud Tasks API -----------------------------------------------------------------------

    def _match(self, request: Request) -> tuple[_Route, str, tuple[str, ...]]:
        path = request.path
        known_path = False
        for route in ROUTES:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            known_path = True
            if route.http_method == request.method:
                return route, match.group(1), match.groups()[1:]
        if known_path:
            raise HttpError(
                grpc.StatusCode.NOT_FOUND, f"method {request.method} is not served on {path}"
            )
        raise HttpError(grpc.StatusCode.NOT_FOUND, f"no such API path: {request.method} {path}")

    def _handle_api(self, request: Request) -> Response:
        route, api, values = self._match(request)
        if route.rpc in _UNIMPLEMENTED:
            raise HttpError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{route.rpc} is not implemented by the emulator: {_UNIMPLEMENTED[route.rpc]}",
            )
        ints = _ints_for_enums(request)
        if route.rpc == "BufferTask":
            message: Any = self._buffer_request(route, values, request)
            answer = self.service.call(api, route.rpc, message)
            payload: Any = {"task": self._to_json(answer["task"], ints)}
        else:
            message = self._build_request(api, route, values, request)
            payload = self._to_json(self.service.call(api, route.rpc, message), ints)
        return _json_response(
            payload,
            pretty=request.args.get("prettyPrint", "true").lower() not in ("false", "0"),
        )

    @staticmethod
    def _buffer_request(route: _Route, values: tuple[str, ...], request: Request) -> Any:
        """BufferTaskRequest {queue, task_id, body: google.api.HttpBody} from the REST call."""
        fields = _read_json_body(request)
        body = fields.get("body") or {}
        if not isinstance(body, dict):
            raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, '"body" must be an HttpBody object')
        try:
            data = base64.b64decode(body.get("data") or "", validate=False)
        except (ValueError, TypeError):
            raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, "body.data must be base64") from None
        content_type = body.get("contentType") or body.get("content_type") or ""
        bound = dict(zip(route.path_fields, values, strict=True))
        return BufferTaskRequest(
            queue=bound["queue"],
            task_id=bound.get("taskId", ""),
            body=data,
            content_type=str(content_type),
        )

    def _build_request(
        self, api: str, route: _Route, values: tuple[str, ...], request: Request
    ) -> Any:
        request_type: Any
        fields: dict[str, Any] = {}
        if route.body == "*":
            fields = _read_json_body(request)
        elif route.body is not None:
            fields[route.body] = _read_json_body(request)
        for key in request.args:
            if key in _SYSTEM_PARAMS:
                continue
            values_for_key = request.args.getlist(key)
            _set_path(
                fields, key, values_for_key[0] if len(values_for_key) == 1 else values_for_key
            )
        for dotted, value in zip(route.path_fields, values, strict=True):
            _set_path(fields, dotted, value)
        if route.rpc in ("ListLocations", "GetLocation"):
            request_type = getattr(locations_pb2, f"{route.rpc}Request")
            try:
                return json_format.ParseDict(fields, request_type())
            except json_format.ParseError as err:
                raise HttpError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"Invalid JSON payload received. {err}"
                ) from None
        request_type = getattr(_types_module(api), f"{route.rpc}Request")
        try:
            pb = json_format.ParseDict(fields, request_type.pb(request_type()))
        except json_format.ParseError as err:
            raise HttpError(
                grpc.StatusCode.INVALID_ARGUMENT, f"Invalid JSON payload received. {err}"
            ) from None
        return request_type.wrap(pb)

    @staticmethod
    def _to_json(response: Any, ints_for_enums: bool) -> Any:
        pb: Message = response if isinstance(response, Message) else type(response).pb(response)
        return json_format.MessageToDict(pb, use_integers_for_enums=ints_for_enums)

    # -- identity: what an application needs to verify the tokens tasks carry ----------------

    def _handle_identity(self, request: Request) -> Response:
        path = request.path
        if path == "/.well-known/openid-configuration":
            return _json_response(self.signer.discovery(self.url))
        if path == "/oauth2/v3/certs":
            return _json_response(self.signer.jwks())
        if path == "/oauth2/v1/certs":
            return _json_response(self.signer.pem_certs())
        # /oauth2/v3/tokeninfo: what Google answers for an access token
        token = request.args.get("access_token", "")
        info = self.signer.token_info(token)
        if info is None:
            return _json_response({"error_description": "Invalid Value"}, 400)
        return _json_response(info)

    # -- control endpoints ---------------------------------------------------------------------

    def _handle_control(self, request: Request) -> Response:
        handler = self._control_routes.get((request.method, request.path))
        if handler is None:
            known = sorted({path for _method, path in self._control_routes})
            raise HttpError(
                grpc.StatusCode.NOT_FOUND,
                f"no such control endpoint: {request.method} {request.path} "
                f"(known: {', '.join(known)})",
            )
        return _json_response(_to_jsonable(handler(request)))

    def _post_fault(self, request: Request) -> dict[str, Any]:
        body = _read_json_body(request)
        method = body.get("method")
        if not isinstance(method, str) or not method:
            raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, '"method" (a string) is required')
        times = body.get("times", 1)
        if not isinstance(times, int) or isinstance(times, bool) or times == 0 or times < -1:
            raise HttpError(
                grpc.StatusCode.INVALID_ARGUMENT,
                '"times" must be a positive integer, or -1 for every call',
            )
        after = body.get("after", 0)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, '"after" must be an integer >= 0')
        if ("code" in body) == ("delay_s" in body):
            raise HttpError(
                grpc.StatusCode.INVALID_ARGUMENT, 'give exactly one of "code" and "delay_s"'
            )
        if "code" in body:
            code = _status_code(body["code"])
            if code == grpc.StatusCode.OK:
                raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, "an injected fault cannot be OK")
            message = body.get("message")
            if message is not None and not isinstance(message, str):
                raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, '"message" must be a string')
            self.control.fail(method, code, times=times, message=message, after=after)
            return {
                "method": method,
                "code": code.name,
                "times": times,
                "message": message,
                "after": after,
            }
        if "after" in body:
            raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, '"after" applies to faults only')
        delay_s = body["delay_s"]
        if not isinstance(delay_s, (int, float)) or isinstance(delay_s, bool) or delay_s < 0:
            raise HttpError(
                grpc.StatusCode.INVALID_ARGUMENT, '"delay_s" must be a number of seconds >= 0'
            )
        self.control.delay(method, float(delay_s), times=times)
        return {"method": method, "delay_s": float(delay_s), "times": times}

    def _clear_faults(self, _request: Request) -> dict[str, Any]:
        self.control.clear()
        return {}

    def _get_calls(self, _request: Request) -> dict[str, Any]:
        return {"calls": dict(self.control.call_counts())}

    def _reset_calls(self, _request: Request) -> dict[str, Any]:
        self.control.reset_counters()
        return {}

    def _get_runs(self, _request: Request) -> dict[str, Any]:
        return {"runs": list(self.control.run_log())}

    def _deploy(self, request: Request) -> dict[str, Any]:
        body = _read_json_body(request)
        service = body.get("service")
        uri = body.get("uri")
        at = body.get("at")
        if not isinstance(service, str):
            raise HttpError(
                grpc.StatusCode.INVALID_ARGUMENT,
                '"service" (projects/P/locations/L/services/S) is required',
            )
        if uri is not None and not isinstance(uri, str):
            raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, '"uri" must be a string')
        when: datetime | None = None
        if at is not None:
            try:
                when = datetime.fromisoformat(str(at).replace("Z", "+00:00"))
            except ValueError:
                when = None
            if when is None or when.tzinfo is None:
                raise HttpError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    '"at" must be an RFC 3339 time with a zone, e.g. 2026-01-01T00:00:00Z',
                )
        revision = self.cloudrun.deploy(service, uri=uri, at=when)
        return {"service": service, "revision": revision}
