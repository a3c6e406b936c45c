"""The Cloud Tasks service layer: one `call(api, method, request)` for both front ends.

Requests are the messages of google-cloud-tasks (v2 or v2beta3), raw protobuf or proto-plus
(unwrapped on entry, without a copy); responses are raw protobuf messages, which both front ends
serialize without a proto-plus round trip. Every non-OK answer is an `RpcError`. Validation and
error texts follow the real API's documented rules.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.cloud import tasks_v2, tasks_v2beta3
from google.cloud.location import locations_pb2
from google.protobuf import empty_pb2, field_mask_pb2
from google.protobuf.message import Message

from cloudtasks_emulator import model
from cloudtasks_emulator.control import Control, RunRecord
from cloudtasks_emulator.errors import RpcError
from cloudtasks_emulator.model import AttemptSpec, QueueState, Store, TaskState
from cloudtasks_emulator.names import BadName, QueuePath, TaskPath, queue_path, task_path
from cloudtasks_emulator.quota import QuotaGate, Quotas

APIS = {"v2": tasks_v2, "v2beta3": tasks_v2beta3}
_LIST_QUEUES_RESPONSE: dict[str, Any] = {a: m.ListQueuesResponse.pb() for a, m in APIS.items()}
_LIST_TASKS_RESPONSE: dict[str, Any] = {a: m.ListTasksResponse.pb() for a, m in APIS.items()}

TASK_METHODS = ("ListTasks", "GetTask", "CreateTask", "DeleteTask", "RunTask", "BufferTask")
LOCATION_METHODS = ("ListLocations", "GetLocation")
QUEUE_METHODS = (
    "ListQueues",
    "GetQueue",
    "CreateQueue",
    "UpdateQueue",
    "DeleteQueue",
    "PurgeQueue",
    "PauseQueue",
    "ResumeQueue",
)
IAM_METHODS = ("GetIamPolicy", "SetIamPolicy", "TestIamPermissions")
UNSUPPORTED_METHODS = ("BatchCreateTasks", "BatchDeleteTasks", "UpdateCmekConfig", "GetCmekConfig")
ALL_METHODS = QUEUE_METHODS + TASK_METHODS + LOCATION_METHODS + IAM_METHODS + UNSUPPORTED_METHODS

# Regions where Cloud Tasks runs (the Cloud Tasks locations page; the real list grows over
# time); `Emulator(locations=...)` / `--locations` replaces the list.
DEFAULT_LOCATIONS = (
    "asia-east1",
    "asia-east2",
    "asia-northeast1",
    "asia-northeast2",
    "asia-northeast3",
    "asia-south1",
    "asia-southeast1",
    "asia-southeast2",
    "australia-southeast1",
    "europe-central2",
    "europe-west1",
    "europe-west2",
    "europe-west3",
    "europe-west6",
    "northamerica-northeast1",
    "northamerica-northeast2",
    "southamerica-east1",
    "us-central1",
    "us-east1",
    "us-east4",
    "us-south1",
    "us-west1",
    "us-west2",
    "us-west3",
    "us-west4",
)
_PROJECT_RE = re.compile(r"projects/([^/]+)")

MAX_TASK_PAGE = 1000
MAX_QUEUE_PAGE = 9800
MAX_TASK_BYTES = 1024 * 1024
MAX_URL_CHARS = 2083
_PARENT_RE = re.compile(r"projects/([A-Za-z0-9:.\-]{1,100})/locations/([A-Za-z0-9\-]{1,63})")
_STATE_FILTER_RE = re.compile(r"\s*state\s*[:=]\s*([A-Z_]+)\s*")
_OUTPUT_ONLY_QUEUE = ("name", "state", "purge_time", "stats")

# Texts of the real service (captured by others against Cloud Tasks; see docs/emulator.md).
QUEUE_NOT_FOUND = (
    "Queue does not exist. If you just created the queue, wait at least a minute for the queue "
    "to initialize."
)
ENTITY_NOT_FOUND = "Requested entity was not found."
QUEUE_EXISTS = "Queue already exists"
QUEUE_TOO_RECENT = (
    "The queue cannot be created because a queue with this name existed too recently."
)
TASK_NOT_FOUND = "Requested entity was not found."
TASK_EXISTS = "Requested entity already exists"
TASK_GONE = (
    "The task no longer exists, though a task with this name existed recently. The task either "
    "successfully completed or was deleted."
)
TASK_TOO_RECENT = (
    "The task cannot be created because a task with this name existed too recently. A task name "
    "cannot be reused within the de-duplication window after the task was deleted or executed."
)


@dataclass(frozen=True)
class BufferTaskRequest:
    """BufferTask's request (google-cloud-tasks 2.26 ships no type for it)."""

    queue: str
    task_id: str = ""
    body: bytes = b""
    content_type: str = ""


class DispatchSink(Protocol):
    """What the service needs from the dispatcher."""

    def notify(self, queue: str) -> None: ...

    def launch(self, spec: AttemptSpec) -> None: ...


def _invalid(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _raw(message: Any) -> Any:
    """The raw protobuf behind a proto-plus message (no copy); raw messages pass through."""
    if isinstance(message, Message):
        return message
    to_pb = getattr(type(message), "pb", None)
    return to_pb(message) if to_pb is not None else message


class CloudTasksService:
    """Cloud Tasks v2 and v2beta3 over one version-neutral store."""

    def __init__(
        self,
        store: Store,
        control: Control,
        dispatcher: DispatchSink,
        quotas: Quotas | None = None,
        locations: tuple[str, ...] = DEFAULT_LOCATIONS,
    ) -> None:
        self.store = store
        self.control = control
        self.dispatcher = dispatcher
        self.clock = store.clock
        self.quota = QuotaGate(quotas or Quotas(), store.clock)
        self.locations = tuple(locations)
        self._handlers: dict[str, Callable[[str, Any], Any]] = {
            "ListQueues": self._list_queues,
            "GetQueue": self._get_queue,
            "CreateQueue": self._create_queue,
            "UpdateQueue": self._update_queue,
            "DeleteQueue": self._delete_queue,
            "PurgeQueue": self._purge_queue,
            "PauseQueue": self._pause_queue,
            "ResumeQueue": self._resume_queue,
            "ListTasks": self._list_tasks,
            "GetTask": self._get_task,
            "CreateTask": self._create_task,
            "DeleteTask": self._delete_task,
            "RunTask": self._run_task,
            "BufferTask": self._buffer_task,
            "ListLocations": self._list_locations,
            "GetLocation": self._get_location,
        }

    # -- entry point -----------------------------------------------------------------------
    def call(self, api: str, method: str, request: Any) -> Any:
        """Answer one RPC of `api` ("v2" | "v2beta3"); raise RpcError for non-OK answers."""
        if api not in APIS:
            raise RpcError(grpc.StatusCode.UNIMPLEMENTED, f"unknown Cloud Tasks API version {api}")
        request = _raw(request)
        if method == "RunTask":
            return self._logged_run(api, request)
        self.control.before_call(method, api)
        self.quota.admit(method, _project_of(request))
        return self._answer(api, method, request)

    def _answer(self, api: str, method: str, request: Any) -> Any:
        handler = self._handlers.get(method)
        if handler is not None:
            return handler(api, request)
        if method in IAM_METHODS:
            raise RpcError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{method}: the Cloud Tasks emulator has no IAM; every caller may do everything.",
            )
        if method in UNSUPPORTED_METHODS:
            raise RpcError(
                grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented by the emulator."
            )
        raise RpcError(grpc.StatusCode.UNIMPLEMENTED, f"unknown method {method}")

    def _logged_run(self, api: str, request: Any) -> Any:
        wall, emulated = time.time(), self.clock.now()
        name = str(getattr(request, "name", ""))
        try:
            self.control.before_call("RunTask", api)
            self.quota.admit("RunTask", _project_of(request))
            task = self._answer(api, "RunTask", request)
        except RpcError as err:
            self.control.record_run(RunRecord(name, api, wall, emulated, err.code, err.message))
            raise
        self.control.record_run(
            RunRecord(name, api, wall, emulated, grpc.StatusCode.OK, "", int(task.dispatch_count))
        )
        return task

    # -- helpers ---------------------------------------------------------------------------
    def _queue_name(self, value: str) -> QueuePath:
        try:
            return queue_path(value)
        except BadName as err:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, err.message, (err.help,)) from None

    def _task_name(self, value: str) -> TaskPath:
        try:
            return task_path(value)
        except BadName as err:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, err.message, (err.help,)) from None

    def _parent(self, value: str) -> str:
        if not _PARENT_RE.fullmatch(value or ""):
            raise _invalid(f"parent must be projects/PROJECT_ID/locations/LOCATION_ID: {value!r}")
        return value

    def _queue(self, name: str, missing: str = QUEUE_NOT_FOUND) -> QueueState:
        qs = self.store.queues.get(name)
        if qs is None:
            raise RpcError(grpc.StatusCode.NOT_FOUND, missing)
        return qs

    def _task(self, name: str) -> tuple[QueueState, TaskState]:
        tn = self._task_name(name)
        qs = self._queue(str(tn.queue_name))
        ts = qs.tasks.get(name)
        if ts is not None and self.store.expired(qs, ts, self.clock.now_s()):
            ts = None
        if ts is None:
            gone = self.store.recently_used(name)
            raise RpcError(grpc.StatusCode.NOT_FOUND, TASK_GONE if gone else TASK_NOT_FOUND)
        return qs, ts

    def _queue_out(self, api: str, qs: QueueState, stats: bool = False) -> Any:
        out = model.queue_to_api(api, qs.pb)
        if api == "v2beta3" and stats:
            self.store.fill_stats(qs, out)
        return out

    def _task_out(self, api: str, ts: TaskState, view: int) -> Any:
        return model.task_to_api(api, ts.pb, view)

    @staticmethod
    def _read_mask(request: Any) -> list[str] | None:
        """v2beta3 read_mask paths (None: no mask, every field but stats)."""
        mask = getattr(request, "read_mask", None)
        if mask is None or not request.HasField("read_mask"):
            return None
        paths = list(mask.paths)
        for path in paths:
            if not _valid_path(tasks_v2beta3.Queue.pb().DESCRIPTOR, path):
                raise _invalid(f"Invalid field mask path: {path}")
        return paths

    def _queue_masked(self, api: str, qs: QueueState, paths: list[str] | None) -> Any:
        """The read_mask rule: without a mask every field but stats; with one, exactly its
        fields (stats only when the mask names it)."""
        out = self._queue_out(api, qs, stats=paths is not None and "stats" in paths)
        if paths is None:
            return out
        masked = type(out)()
        field_mask_pb2.FieldMask(paths=paths).MergeMessage(out, masked)
        return masked

    # -- queues ----------------------------------------------------------------------------
    def _validate_queue(self, queue: Any) -> None:
        """The checks and texts of the real CreateQueue/UpdateQueue (captured answers)."""
        rl = queue.rate_limits
        if rl.max_dispatches_per_second < 0:
            raise _invalid("RateLimits.maxDispatchesPerSecond cannot be negative.")
        if rl.max_dispatches_per_second > model.MAX_RATE_PER_S:
            raise _invalid("RateLimits.maxDispatchesPerSecond must be less than or equal to 500.")
        if rl.max_concurrent_dispatches < 0:
            raise _invalid("RateLimits.maxConcurrentDispatches cannot be negative.")
        if rl.max_concurrent_dispatches > model.MAX_MAX_CONCURRENT:
            raise _invalid("RateLimits.maxConcurrentDispatches must be less than or equal to 5000.")
        rc = queue.retry_config
        if rc.max_attempts < -1:
            raise _invalid("RetryConfig.maxAttempts must be greater or equal to -1.")
        if rc.max_doublings < 0:
            raise _invalid("RetryConfig.maxDoublings cannot be negative.")
        for fname, camel in (
            ("min_backoff", "minBackoff"),
            ("max_backoff", "maxBackoff"),
            ("max_retry_duration", "maxRetryDuration"),
        ):
            if model.dur_s(getattr(rc, fname)) < 0:
                raise _invalid(f"RetryConfig.{camel} cannot be negative.")
        if (
            rc.HasField("min_backoff")
            and rc.HasField("max_backoff")
            and model.dur_s(rc.min_backoff) > model.dur_s(rc.max_backoff)
        ):
            raise _invalid(
                "RetryConfig.minBackoff must be less than or equal to RetryConfig.maxBackoff."
            )
        sampling = queue.stackdriver_logging_config.sampling_ratio
        if not 0.0 <= sampling <= 1.0:
            raise _invalid("StackdriverLoggingConfig.samplingRatio must be between 0.0 and 1.0.")
        if queue.HasField("tombstone_ttl"):
            ttl = model.dur_s(queue.tombstone_ttl)
            if not model.MIN_TOMBSTONE_TTL_S <= ttl <= model.MAX_TOMBSTONE_TTL_S:
                raise _invalid("Queue.tombstoneTtl must be between 1 hour and 9 days.")
        if queue.HasField("task_ttl"):
            ttl = model.dur_s(queue.task_ttl)
            if not model.MIN_TASK_TTL_S <= ttl <= model.MAX_TASK_TTL_S:
                raise _invalid("Queue.taskTtl must be between 10 days and 10 years.")

    @staticmethod
    def _truncate_durations(queue: Any) -> None:
        """min_backoff, max_backoff and max_retry_duration "will be truncated to the nearest
        second" (RetryConfig). Durations under a second are kept: the service shows its own
        default min_backoff, and gcloud's --min-backoff default, as 0.100s."""
        rc = queue.retry_config
        for fname in ("min_backoff", "max_backoff", "max_retry_duration"):
            duration = getattr(rc, fname)
            if rc.HasField(fname) and duration.seconds >= 1:
                model.truncate_dur(duration, 1_000_000_000)

    def _list_queues(self, api: str, request: Any) -> Any:
        parent = self._parent(request.parent)
        page_size = request.page_size or MAX_QUEUE_PAGE
        if page_size < 0:
            raise _invalid("page_size must not be negative")
        page_size = min(page_size, MAX_QUEUE_PAGE)
        state: int | None = None
        if request.filter:
            match = _STATE_FILTER_RE.fullmatch(request.filter)
            states = {"RUNNING": model.RUNNING, "PAUSED": model.PAUSED, "DISABLED": 3}
            if match is None or match.group(1) not in states:
                raise _invalid(f"unsupported filter {request.filter!r} (only state: STATE)")
            state = states[match.group(1)]
        start = ""
        if request.page_token:
            decoded = model.decode_queue_token(request.page_token)
            if decoded is None:
                raise _invalid("invalid page_token")
            start = decoded
        paths = self._read_mask(request)
        prefix = parent + "/queues/"
        with self.store.lock:
            names = sorted(n for n in self.store.queues if n.startswith(prefix) and n > start)
            picked: list[QueueState] = []
            more = False
            for n in names:
                qs = self.store.queues[n]
                if state is not None and qs.pb.state != state:
                    continue
                if len(picked) == page_size:
                    more = True
                    break
                picked.append(qs)
            response = _LIST_QUEUES_RESPONSE[api]()
            for qs in picked:
                response.queues.append(self._queue_masked(api, qs, paths))
        if more and picked:
            response.next_page_token = model.encode_queue_token(picked[-1].name)
        return response

    def _get_queue(self, api: str, request: Any) -> Any:
        name = str(self._queue_name(request.name))
        paths = self._read_mask(request)
        with self.store.lock:
            return self._queue_masked(api, self._queue(name), paths)

    def _create_queue(self, api: str, request: Any) -> Any:
        parent = self._parent(request.parent)
        queue = model.queue_from_api(api, request.queue)
        qn = self._queue_name(queue.name)
        if qn.parent != parent:
            raise _invalid(
                f"The parent from request ('{parent}') must be the same as the parent of the "
                f"queue name ('{qn.parent}')."
            )
        self._validate_queue(queue)
        self._truncate_durations(queue)
        for fname in ("state", "purge_time", "stats"):
            queue.ClearField(fname)
        queue.rate_limits.ClearField("max_burst_size")
        queue.state = model.RUNNING
        model.fill_queue_defaults(queue, self.store.dedup_window_s)
        with self.store.lock:
            if queue.name in self.store.queues:
                raise RpcError(grpc.StatusCode.ALREADY_EXISTS, QUEUE_EXISTS)
            if self.store.queue_recently_deleted(queue.name):
                raise RpcError(grpc.StatusCode.FAILED_PRECONDITION, QUEUE_TOO_RECENT)
            qs = QueueState(pb=queue, token_s=self.clock.now_s())
            qs.tokens = float(queue.rate_limits.max_burst_size)
            self.store.queues[queue.name] = qs
            out = self._queue_out(api, qs)
        return out

    def _update_queue(self, api: str, request: Any) -> Any:
        req_queue = request.queue
        name = str(self._queue_name(req_queue.name))
        paths = list(request.update_mask.paths)
        queue_cls = type(req_queue)
        for path in paths:
            if not _valid_path(queue_cls.DESCRIPTOR, path):
                raise _invalid(f"update_mask path {path!r} is not a field of Queue")
        with self.store.lock:
            qs = self.store.queues.get(name)
            created = qs is None
            if created and self.store.queue_recently_deleted(name):
                raise RpcError(grpc.StatusCode.FAILED_PRECONDITION, QUEUE_TOO_RECENT)
            if created:  # UpdateQueue creates a missing queue, as the API documents
                current = queue_cls()
                current.name = name
            else:
                assert qs is not None
                current = model.queue_to_api(api, qs.pb)
            if paths:
                wanted = [p for p in paths if p.split(".")[0] not in _OUTPUT_ONLY_QUEUE]
                mask = field_mask_pb2.FieldMask(paths=wanted)
                mask.MergeMessage(req_queue, current, replace_message_field=True)
                merged = current
            else:
                merged = queue_cls()
                merged.CopyFrom(req_queue)
            new = model.queue_from_api(api, merged)
            self._validate_queue(new)
            self._truncate_durations(new)
            new.name = name
            for fname in ("state", "purge_time", "stats"):
                new.ClearField(fname)
            new.rate_limits.ClearField("max_burst_size")
            if qs is not None:
                new.state = qs.pb.state
                if qs.pb.HasField("purge_time"):
                    new.purge_time.CopyFrom(qs.pb.purge_time)
            else:
                new.state = model.RUNNING
            model.fill_queue_defaults(new, self.store.dedup_window_s)
            if qs is None:
                qs = QueueState(pb=new, token_s=self.clock.now_s())
                qs.tokens = float(new.rate_limits.max_burst_size)
                self.store.queues[name] = qs
            else:
                qs.pb = new
                qs.tokens = min(qs.tokens, float(new.rate_limits.max_burst_size))
            out = self._queue_out(api, qs)
        self.dispatcher.notify(name)
        return out

    def _delete_queue(self, api: str, request: Any) -> Any:
        name = str(self._queue_name(request.name))
        with self.store.lock:
            qs = self._queue(name, missing=ENTITY_NOT_FOUND)
            for ts in list(qs.tasks.values()):
                self.store.remove_task(qs, ts)
            del self.store.queues[name]
            self.store.queue_deleted(name)
        self.dispatcher.notify(name)
        return empty_pb2.Empty()

    def _purge_queue(self, api: str, request: Any) -> Any:
        name = str(self._queue_name(request.name))
        with self.store.lock:
            qs = self._queue(name)
            for ts in list(qs.tasks.values()):
                self.store.remove_task(qs, ts)
            qs.heap.clear()
            model.set_ts(qs.pb.purge_time, self.clock.now_s())
            out = self._queue_out(api, qs)
        self.dispatcher.notify(name)
        return out

    def _set_state(self, api: str, request: Any, state: int) -> Any:
        name = str(self._queue_name(request.name))
        with self.store.lock:
            qs = self._queue(name)
            qs.pb.state = state
            out = self._queue_out(api, qs)
        self.dispatcher.notify(name)
        return out

    def _pause_queue(self, api: str, request: Any) -> Any:
        return self._set_state(api, request, model.PAUSED)

    def _resume_queue(self, api: str, request: Any) -> Any:
        return self._set_state(api, request, model.RUNNING)

    # -- tasks -----------------------------------------------------------------------------
    def _list_tasks(self, api: str, request: Any) -> Any:
        name = str(self._queue_name(request.parent))
        page_size = request.page_size or MAX_TASK_PAGE
        if page_size < 0:
            raise _invalid("page_size must not be negative")
        page_size = min(page_size, MAX_TASK_PAGE)
        after = 0
        if request.page_token:
            key = model.decode_page_token("t", request.page_token)
            if key is None:
                raise _invalid("invalid page_token")
            after = key
        view = int(request.response_view)
        response = _LIST_TASKS_RESPONSE[api]()
        out_tasks = response.tasks
        with self.store.lock:
            qs = self._queue(name)
            count = 0
            last_seq = 0
            more = False
            # insertion order == seq order, so the page starts right after the token's key
            now_s = self.clock.now_s()
            stale: list[TaskState] = []
            for ts in qs.tasks.values():
                if ts.seq <= after:
                    continue
                if self.store.past_ttl(qs, ts, now_s):
                    stale.append(ts)
                    continue
                if count == page_size:
                    more = True
                    break
                # converted straight into the response: one copy per task, not two
                model.task_to_api(api, ts.pb, view, out_tasks.add())
                count += 1
                last_seq = ts.seq
            for ts in stale:
                self.store.remove_task(qs, ts)
        if more:
            response.next_page_token = model.encode_page_token("t", last_seq)
        return response

    def _get_task(self, api: str, request: Any) -> Any:
        with self.store.lock:
            _, ts = self._task(request.name)
            return self._task_out(api, ts, int(request.response_view))

    def _delete_task(self, api: str, request: Any) -> Any:
        with self.store.lock:
            qs, ts = self._task(request.name)
            self.store.remove_task(qs, ts)
        return empty_pb2.Empty()

    def _validate_new_task(self, qs: QueueState, task: Any) -> None:
        if task.HasField("pull_message"):
            raise _invalid("pull_message cannot be set: only push tasks can be created")
        if qs.pb.type_ == model.PULL:
            raise _invalid("push tasks cannot be added to a PULL queue")
        has_http = task.HasField("http_request")
        has_gae = task.HasField("app_engine_http_request")
        overridden = qs.pb.HasField("http_target") and qs.pb.http_target.HasField("uri_override")
        if not has_http and not has_gae:
            if overridden:
                task.http_request.SetInParent()
                has_http = True
            else:
                raise _invalid("Task must have http_request or app_engine_http_request")
        if has_http:
            req = task.http_request
            url = req.url
            if not url and not overridden:
                raise _invalid("HttpRequest.url is required.")
            if url and not (url.startswith("http://") or url.startswith("https://")):
                raise _invalid("HttpTarget.url must start with 'http://' or 'https://'.")
            if len(url) > MAX_URL_CHARS:
                raise _invalid(f"HttpRequest.url must be at most {MAX_URL_CHARS} characters.")
            method = model.HTTP_METHODS.get(req.http_method, "POST")
            if req.body and method not in model.BODY_METHODS:
                raise _invalid("HTTP request body is allowed only with POST, PUT or PATCH")
            if req.oidc_token.service_account_email == "" and req.HasField("oidc_token"):
                raise _invalid("oidc_token.service_account_email is required")
            if req.oauth_token.service_account_email == "" and req.HasField("oauth_token"):
                raise _invalid("oauth_token.service_account_email is required")
            ceiling = model.MAX_DEADLINE_S
            model.clean_headers(req.headers, app_engine=False, body=bytes(req.body))
        else:
            req = task.app_engine_http_request
            method = model.HTTP_METHODS.get(req.http_method, "POST")
            if req.body and method not in model.BODY_METHODS:
                raise _invalid("HTTP request body is allowed only with POST, PUT or PATCH")
            if req.relative_uri and not req.relative_uri.startswith("/"):
                raise _invalid("app_engine_http_request.relative_uri must start with '/'")
            ceiling = model.MAX_APP_ENGINE_DEADLINE_S
            model.clean_headers(req.headers, app_engine=True, body=bytes(req.body))
        if task.HasField("dispatch_deadline"):
            # "dispatch_deadline will be truncated to the nearest millisecond" (Task)
            model.truncate_dur(task.dispatch_deadline, 1_000_000)
            deadline = model.dur_s(task.dispatch_deadline)
            if not model.MIN_DEADLINE_S <= deadline <= ceiling:
                raise _invalid(
                    f"dispatch_deadline must be between {model.MIN_DEADLINE_S:g}s and {ceiling:g}s"
                )
        if task.ByteSize() > MAX_TASK_BYTES:
            raise _invalid("Task size exceeds the maximum of 1 MB")

    def _create_task(self, api: str, request: Any) -> Any:
        parent = str(self._queue_name(request.parent))
        task = model.task_from_api(api, request.task)
        return self._add_task(api, parent, task, int(request.response_view))

    def _add_task(self, api: str, parent: str, task: Any, view: int) -> Any:
        if task.name:
            tn = self._task_name(task.name)
            if str(tn.queue_name) != parent:
                raise _invalid(
                    f"The queue name from request ('{parent}') must be the same as the queue "
                    f"name in the named task ('{tn.queue_name}')."
                )
        for fname in ("create_time", "dispatch_count", "response_count", "first_attempt"):
            task.ClearField(fname)
        task.ClearField("last_attempt")
        task.ClearField("view")
        now = self.clock.now_s()
        schedule_s = now
        if task.HasField("schedule_time"):
            requested_s = model.ts_s(task.schedule_time)
            if requested_s > now + model.MAX_SCHEDULE_AHEAD_S:
                raise _invalid("schedule_time must be at most 30 days in the future")
            # "If schedule_time is not set or is in the past then Cloud Tasks will set it to
            # the current time." (CreateTaskRequest)
            schedule_s = max(requested_s, now)
        with self.store.lock:
            qs = self._queue(parent)
            self._validate_new_task(qs, task)
            if task.name:
                if task.name in qs.tasks:
                    raise RpcError(grpc.StatusCode.ALREADY_EXISTS, TASK_EXISTS)
                if self.store.recently_used(task.name):
                    raise RpcError(grpc.StatusCode.ALREADY_EXISTS, TASK_TOO_RECENT)
            else:
                task.name = f"{parent}/tasks/{model.generated_task_id()}"
                while task.name in qs.tasks:
                    task.name = f"{parent}/tasks/{model.generated_task_id()}"
            model.set_ts(task.schedule_time, schedule_s)
            task.create_time.seconds = int(now)
            if task.HasField("http_request") and not task.HasField("dispatch_deadline"):
                model.set_dur(task.dispatch_deadline, model.DEFAULT_DEADLINE_S)
            ts = TaskState(pb=task, seq=self.store.next_seq(), schedule_s=schedule_s, created_s=now)
            qs.tasks[task.name] = ts
            qs.push(ts)
            # The worker must look again only if the queue runs and the new task is now its
            # earliest: otherwise its current sleep (until an earlier schedule time, a token or a
            # wake-up by resume/finish) already covers this task. Saves a loop wake-up per call.
            wake = qs.pb.state == model.RUNNING and qs.heap[0][1] == ts.seq
            out = self._task_out(api, ts, view)
        if wake:
            self.dispatcher.notify(parent)
        return out

    def _buffer_task(self, api: str, request: Any) -> Any:
        """BufferTask (REST `tasks:buffer`; no gRPC type in google-cloud-tasks 2.26): a task
        on a queue whose HttpTarget gives the URI, with the HttpBody as its body and the
        body's content type as its Content-Type. Answers {"task": Task} (BASIC view)."""
        parent = str(self._queue_name(request.queue))
        with self.store.lock:
            qs = self._queue(parent)
            has_target = qs.pb.HasField("http_target") and qs.pb.http_target.HasField(
                "uri_override"
            )
        if not has_target:
            raise RpcError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "BufferTask requires the queue to have an HTTP target with a URI override.",
            )
        task = model.B3Task()
        if request.task_id:
            task.name = f"{parent}/tasks/{request.task_id}"
        task.http_request.SetInParent()
        if request.body:
            task.http_request.body = request.body
            task.http_request.http_method = 1  # POST: a body needs it
        if request.content_type:
            task.http_request.headers["Content-Type"] = request.content_type
        return {"task": self._add_task(api, parent, task, model.BASIC)}

    def _run_task(self, api: str, request: Any) -> Any:
        with self.store.lock:
            qs, ts = self._task(request.name)
            if qs.pb.type_ == model.PULL:
                raise RpcError(
                    grpc.StatusCode.FAILED_PRECONDITION, "RunTask cannot be called on a pull task"
                )
            spec = self.store.start_attempt(qs, ts, forced=True)
            out = self._task_out(api, ts, int(request.response_view))
        self.dispatcher.launch(spec)
        return out

    # -- locations (the google.cloud.location mixin) ---------------------------------------
    def _project_locations(self, project: str) -> list[str]:
        """The configured regions plus any other location the project has queues in (the
        emulator accepts any location id for queues)."""
        prefix = f"projects/{project}/locations/"
        with self.store.lock:
            names = [n for n in self.store.queues if n.startswith(prefix)]
        used = {n[len(prefix) :].split("/", 1)[0] for n in names}
        return sorted(set(self.locations) | used)

    @staticmethod
    def _location(project: str, location_id: str) -> Any:
        return locations_pb2.Location(
            name=f"projects/{project}/locations/{location_id}",
            location_id=location_id,
            labels={"cloud.googleapis.com/region": location_id},
        )

    def _list_locations(self, api: str, request: Any) -> Any:
        match = re.fullmatch(r"projects/([^/]+)", request.name or "")
        if match is None:
            raise _invalid(f"Invalid resource name: {request.name!r} (projects/PROJECT_ID).")
        project = match.group(1)
        ids = self._project_locations(project)
        start = 0
        if request.page_token:
            key = model.decode_page_token("l", request.page_token)
            if key is None:
                raise _invalid("invalid page_token")
            start = key
        size = request.page_size or 100
        if size < 0:
            raise _invalid("page_size must not be negative")
        response = locations_pb2.ListLocationsResponse()
        for location_id in ids[start : start + size]:
            response.locations.append(self._location(project, location_id))
        if start + size < len(ids):
            response.next_page_token = model.encode_page_token("l", start + size)
        return response

    def _get_location(self, api: str, request: Any) -> Any:
        match = re.fullmatch(r"projects/([^/]+)/locations/([^/]+)", request.name or "")
        if match is None:
            raise _invalid(
                f"Invalid resource name: {request.name!r} (projects/PROJECT_ID/locations/ID)."
            )
        return self._location(match.group(1), match.group(2))


def _project_of(request: Any) -> str | None:
    """The project a request is charged to (its parent, name, queue name or resource)."""
    for attr in ("parent", "name", "queue", "resource"):
        value = getattr(request, attr, None)
        if isinstance(value, Message):
            value = getattr(value, "name", None)
        if isinstance(value, str) and value:
            match = _PROJECT_RE.match(value)
            return match.group(1) if match else None
    return None


def _valid_path(descriptor: Any, path: str) -> bool:
    for i, part in enumerate(path.split(".")):
        fd = descriptor.fields_by_name.get(part)
        if fd is None:
            return False
        if fd.message_type is None:
            return i == len(path.split(".")) - 1
        descriptor = fd.message_type
    return True
