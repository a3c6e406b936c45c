"""Many redrive jobs at once: CreateTask through the official async client on one event loop.

A queued-mode deploy sweep creates one job per selected task, a thousand to a page. With the
blocking client every call in flight holds a thread, and the threads' hand-offs cost about as much
CPU as the calls themselves; on one event loop `concurrency` calls overlap with no thread per call
(measured on the emulator: about 0.26 ms of client CPU per CreateTask against 0.42 ms with six
threads), and against the real API the 20-50 ms round trips overlap the same way.

The rules are `CloudTasks.create`'s: the job's name is explicit, so a transient failure is retried
(google-api-core's AsyncRetry, within the retry deadline) and ALREADY_EXISTS means the job is held
already. Each job gets its own answer; one job's error never hides another's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redrive.adapters.clients import async_tasks_client, tasks_module
from redrive.adapters.cloudtasks import (
    RETRY_INITIAL_S,
    RETRY_MAXIMUM_S,
    RETRY_MULTIPLIER,
    transient_predicate,
)
from redrive.adapters.translate import translate
from redrive.core import errors
from redrive.core.config import Settings
from redrive.core.jobs import JobTask
from redrive.core.names import QueueName

CONCURRENCY = 32
"""CreateTask calls in flight at once, by default."""
Answer = bool | errors.RedriveError
"""True: created. False: the name is taken (ALREADY_EXISTS). An error: not created."""


class JobQueue:
    """Creates jobs in the redrive queue, `concurrency` at a time; owns its loop and client.

    Not thread-safe: one sweep, one thread. `close()` ends the channel and the loop.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        concurrency: int = CONCURRENCY,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.settings = settings
        self.concurrency = concurrency
        self._loop = asyncio.new_event_loop()
        self._client: Any = None

    def create_all(self, queue: QueueName, jobs: Sequence[JobTask]) -> list[Answer]:
        """One answer per job, in order."""
        if not jobs:
            return []
        return self._loop.run_until_complete(self._create_all(queue, jobs))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            if self._client is not None:
                self._loop.run_until_complete(self._client.transport.close())
        finally:
            self._client = None
            self._loop.close()

    async def _create_all(self, queue: QueueName, jobs: Sequence[JobTask]) -> list[Answer]:
        if self._client is None:
            self._client = async_tasks_client(self.settings)
        from google.api_core.retry import AsyncRetry

        retry = AsyncRetry(
            predicate=transient_predicate,
            initial=RETRY_INITIAL_S,
            maximum=RETRY_MAXIMUM_S,
            multiplier=RETRY_MULTIPLIER,
            timeout=self.settings.retry_deadline_s,
        )
        slots = asyncio.Semaphore(self.concurrency)
        parent = str(queue)
        module = tasks_module(self.settings.tasks_api)
        create_task: Callable[..., Awaitable[Any]] = retry(self._client.create_task)

        async def create(job: JobTask) -> Answer:
            request = _request(module, parent, job)
            async with slots:
                try:
                    await create_task(
                        request=request, retry=None, timeout=self.settings.rpc_timeout_s
                    )
                except Exception as err:
                    translated = translate(err)
                    if isinstance(translated, errors.AlreadyExistsError):
                        return False
                    return translated
            return True

        return list(await asyncio.gather(*(create(job) for job in jobs)))


def _request(module: Any, parent: str, job: JobTask) -> Any:
    """The CreateTaskRequest of `job`, built on the raw protobuf types and wrapped once: the same
    request as `JobTask.request_task()` gives, without proto-plus converting a dict field by field
    (that conversion was the largest cost of a sweep's job after the call itself)."""
    http = module.HttpRequest.pb()(
        url=job.url,
        http_method=module.HttpMethod.POST,
        headers={"Content-Type": "application/json"},
        body=job.body,
    )
    if job.service_account:
        http.oidc_token.service_account_email = job.service_account
        http.oidc_token.audience = job.url
    task = module.Task.pb()(name=job.name, http_request=http)
    if job.dispatch_deadline_s is not None:
        task.dispatch_deadline.seconds = job.dispatch_deadline_s
    if job.schedule_time is not None:
        task.schedule_time.FromDatetime(job.schedule_time)
    request = module.CreateTaskRequest.pb()(
        parent=parent, task=task, response_view=module.Task.View.BASIC
    )
    return module.CreateTaskRequest.wrap(request)
