"""The CreateTaskRequest JobQueue builds on raw protobuf types is the one the dict form gives."""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import tasks_v2, tasks_v2beta3

from redrive.adapters.clients import tasks_module
from redrive.adapters.jobqueue import _request
from redrive.core.jobs import JobTask

QUEUE = "projects/acme/locations/europe-west1/queues/redrive"
URL = "https://redrive-run-job-abc-ew.a.run.app"


@pytest.mark.parametrize("api", ["v2", "v2beta3"])
@pytest.mark.parametrize("account", [None, "redrive-jobs@acme.iam.gserviceaccount.com"])
@pytest.mark.parametrize("deadline_s", [None, 540])
def test_raw_request_equals_the_dict_request(
    api: str, account: str | None, deadline_s: int | None
) -> None:
    module: Any = {"v2": tasks_v2, "v2beta3": tasks_v2beta3}[api]
    assert tasks_module(api) is module
    job = JobTask(
        f"{QUEUE}/tasks/0123abcd-billing-inv_441-d3", URL, b'{"v":1}', account, deadline_s
    )
    built = _request(module, QUEUE, job)
    expected = module.CreateTaskRequest(parent=QUEUE, task=job.request_task(), response_view=1)
    assert isinstance(built, module.CreateTaskRequest)
    assert built == expected
    assert built.task.http_request.oidc_token.service_account_email == (account or "")
    assert built.task.dispatch_deadline.seconds == (deadline_s or 0)
