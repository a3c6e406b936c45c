"""The same flow through Google's Pub/Sub emulator: publish → push subscription → handle_signal.

The push subscription posts raw Pub/Sub push bodies, which functions-framework converts into
CloudEvents, as on Cloud Functions behind a push subscription. Skipped only when gcloud or Java is
missing; with REDRIVE_REQUIRE_PUBSUB=1 a missing emulator fails instead.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from redrive_tools.devserver import free_port, wait_for
from tests.integration.helpers import PARENT, FunctionServer, Stack, dead_letter

pytestmark = [pytest.mark.pubsub, pytest.mark.gcloud]
PROJECT = "demo"
SERVICE = f"{PARENT}/services/billing"


def _require_emulator() -> None:
    missing = [tool for tool in ("gcloud", "java") if shutil.which(tool) is None]
    if missing:
        if os.environ.get("REDRIVE_REQUIRE_PUBSUB") == "1":
            pytest.fail(f"REDRIVE_REQUIRE_PUBSUB=1 but {', '.join(missing)} not found")
        pytest.skip(f"Pub/Sub emulator needs {', '.join(missing)}")


class PubSubEmulator:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = open(workdir / "pubsub.log", "wb")  # noqa: SIM115 - closed in stop()
        (workdir / "data").mkdir(exist_ok=True)  # gcloud writes env.yaml there
        env = {
            **os.environ,
            "CLOUDSDK_CONFIG": str(workdir / "gcloud"),
            "CLOUDSDK_CORE_PROJECT": PROJECT,
        }
        self.process = subprocess.Popen(
            [
                "gcloud",
                "beta",
                "emulators",
                "pubsub",
                "start",
                f"--host-port=127.0.0.1:{self.port}",
                f"--data-dir={workdir / 'data'}",
                f"--project={PROJECT}",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._up, "the Pub/Sub emulator to listen", timeout_s=90)

    def _up(self) -> bool:
        if self.process.poll() is not None:
            self.log.flush()
            raise AssertionError(
                "Pub/Sub emulator exited:\n" + Path(self.log.name).read_text(errors="replace")
            )
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def put(self, path: str, body: dict) -> dict:
        response = httpx.put(f"{self.url}/{path}", json=body, timeout=10)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        message = {"data": base64.b64encode(data).decode(), "attributes": attributes}
        response = httpx.post(
            f"{self.url}/projects/{PROJECT}/topics/{topic}:publish",
            json={"messages": [message]},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["messageIds"][0])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    _require_emulator()
    workdir = tmp_path_factory.mktemp("pubsub")
    stack = Stack()
    pubsub = fn = None
    try:
        billing = stack.queue("billing")
        env = {
            **stack.emu.env(),
            "REDRIVE_ALLOWED_QUEUES": billing,
            "REDRIVE_SERVICE_MAP": json.dumps({SERVICE: [billing]}),
            "REDRIVE_RETRY_DEADLINE_S": "1",
        }
        fn = FunctionServer("handle_signal", "cloudevent", env, workdir / "fn.log")
        pubsub = PubSubEmulator(workdir)
        pubsub.put(f"projects/{PROJECT}/topics/signals", {})
        pubsub.put(
            f"projects/{PROJECT}/subscriptions/redrive-push",
            {
                "topic": f"projects/{PROJECT}/topics/signals",
                # The topic in the push path gives the converted CloudEvent a real source.
                "pushConfig": {"pushEndpoint": f"{fn.url}/projects/{PROJECT}/topics/signals"},
                "ackDeadlineSeconds": 30,
            },
        )
        yield stack, billing, fn, pubsub
    finally:
        if pubsub is not None:
            pubsub.stop()
        if fn is not None:
            fn.stop()
        stack.stop()


def test_published_failure_is_redriven(world):
    stack, billing, fn, pubsub = world
    task = stack.failed_task(billing, "ps-1", "/ps/1")
    stack.emu.cloudrun.deploy(SERVICE)
    stack.target.statuses["/ps/1"] = 200

    message_id = pubsub.publish("signals", dead_letter(task), {"kind": "dead-letter"})

    line = wait_for(lambda: fn.outcomes(signal__message_id=message_id), "the pushed outcome")[0]
    assert line["outcome"] == "DISPATCHED" and line["task"] == task
    assert line["signal"]["publish_time"]
    wait_for(lambda: stack.gone(task), "the re-driven task to complete")


def test_transient_fault_is_redelivered_by_pubsub(world):
    stack, billing, fn, pubsub = world
    task = stack.failed_task(billing, "ps-2", "/ps/2")
    stack.emu.cloudrun.deploy(SERVICE)
    stack.target.statuses["/ps/2"] = 200
    stack.emu.control.fail("GetTask", grpc.StatusCode.UNAVAILABLE, times=-1)
    try:
        message_id = pubsub.publish("signals", dead_letter(task), {})
        wait_for(
            lambda: fn.outcomes(signal__message_id=message_id, outcome="FAILED"),
            "a FAILED outcome (answered 500, so Pub/Sub keeps the message)",
        )
    finally:
        stack.emu.control.clear()
    wait_for(
        lambda: fn.outcomes(signal__message_id=message_id, outcome="DISPATCHED"),
        "the redelivered message to dispatch the task",
    )
    wait_for(lambda: stack.gone(task), "the re-driven task to complete")
    assert len(fn.outcomes(signal__message_id=message_id, outcome="DISPATCHED")) == 1
