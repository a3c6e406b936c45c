"""The gcloud CLI against the emulator's REST port: `gcloud tasks` (v2) and `gcloud beta tasks`
(v2beta3), every queue and task command the issue names, in one flow per API version.

gcloud runs with its own configuration directory (never the user's), pointed at the emulator the way
the README says: `api_endpoint_overrides/cloudtasks` and `auth/disable_credentials`. Skipped only
when gcloud is not installed, and failed instead when REDRIVE_REQUIRE_GCLOUD=1 (CI)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cloudtasks_emulator import Emulator, tasks_client

pytestmark = pytest.mark.gcloud

PROJECT = "gcloud-demo"
LOCATION = "us-central1"
GCLOUD_TIMEOUT_S = 120


def _gcloud_binary() -> str:
    found = shutil.which("gcloud")
    if found is None:
        if os.environ.get("REDRIVE_REQUIRE_GCLOUD") == "1":
            pytest.fail("gcloud is not on PATH and REDRIVE_REQUIRE_GCLOUD=1")
        pytest.skip("gcloud is not on PATH")
    return found


@dataclass
class Target:
    url: str
    received: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """Answers 500, so a task that gcloud runs stays in its queue (rescheduled) for describe."""
    holder: list[Target] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            holder[0].received.append((self.command, self.path, dict(self.headers.items()), body))
            holder[0].arrived.set()
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(Target(url=f"http://127.0.0.1:{server.server_port}"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class Gcloud:
    """Runs gcloud with an isolated configuration pointed at the emulator."""

    def __init__(self, binary: str, config_dir: Path, rest_url: str) -> None:
        self.binary = binary
        self.env = {
            key: value for key, value in os.environ.items() if not key.startswith("CLOUDSDK_")
        }
        self.env.update(
            {
                "CLOUDSDK_CONFIG": str(config_dir),
                # No network beyond the emulator: no update checks, no usage reports, no prompts.
                "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
                "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
                "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            }
        )
        for prop, value in (
            ("api_endpoint_overrides/cloudtasks", f"{rest_url}/"),
            ("auth/disable_credentials", "true"),
            ("core/project", PROJECT),
        ):
            self.run_raw("config", "set", prop, value)

    def run_raw(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=GCLOUD_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def __call__(self, *args: str) -> Any:
        """Run a command with --format=json and return its parsed output (None when empty)."""
        done = self.run_raw(*args, "--format=json", "--quiet")
        assert done.returncode == 0, f"gcloud {' '.join(args)} failed:\n{done.stderr}"
        return json.loads(done.stdout) if done.stdout.strip() else None

    def fails(self, *args: str) -> str:
        done = self.run_raw(*args, "--format=json", "--quiet")
        assert done.returncode != 0, f"gcloud {' '.join(args)} should have failed"
        return done.stderr


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def gcloud(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Gcloud:
    binary = _gcloud_binary()
    return Gcloud(binary, tmp_path_factory.mktemp("gcloud-config"), emulator.rest_url)


@pytest.mark.parametrize(("track", "api"), [((), "v2"), (("beta",), "v2beta3")])
def test_gcloud_queue_and_task_commands(
    gcloud: Gcloud, emulator: Emulator, target: Target, track: tuple[str, ...], api: str
) -> None:
    loc = f"--location={LOCATION}"
    queue_id = f"gcloud-{api}"
    queue = f"projects/{PROJECT}/locations/{LOCATION}/queues/{queue_id}"
    tasks = (*track, "tasks")
    queues = (*tasks, "queues")
    first_request = len(emulator.rest.requests)

    created = gcloud(
        *queues,
        "create",
        queue_id,
        loc,
        "--max-attempts=5",
        "--max-dispatches-per-second=3",
        # A failed attempt waits a minute: the task is still there for the commands after `run`.
        "--min-backoff=60s",
    )
    assert created["name"] == queue
    assert created["rateLimits"]["maxDispatchesPerSecond"] == 3
    assert created["retryConfig"]["maxAttempts"] == 5

    described = gcloud(*queues, "describe", queue_id, loc)
    assert described["name"] == queue
    assert described["state"] == "RUNNING"

    assert queue in [q["name"] for q in gcloud(*queues, "list", loc)]

    gcloud(*queues, "update", queue_id, loc, "--max-dispatches-per-second=7")
    described = gcloud(*queues, "describe", queue_id, loc)
    assert described["rateLimits"]["maxDispatchesPerSecond"] == 7
    assert described["retryConfig"]["maxAttempts"] == 5  # not in the update mask: kept

    gcloud(*queues, "pause", queue_id, loc)
    assert gcloud(*queues, "describe", queue_id, loc)["state"] == "PAUSED"
    gcloud(*queues, "resume", queue_id, loc)
    assert gcloud(*queues, "describe", queue_id, loc)["state"] == "RUNNING"

    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for task_id in ("t1", "t2"):
        made = gcloud(
            *tasks, "create-http-task", task_id, f"--queue={queue_id}", loc,
            f"--url={target.url}/work/{api}", "--method=POST", f"--body-content=hi-{api}",
            "--header=X-Test: yes", f"--schedule-time={later}",
            "--oidc-service-account-email=runner@gcloud-demo.iam.gserviceaccount.com",
        )  # fmt: skip
        assert made["name"] == f"{queue}/tasks/{task_id}"

    listed = gcloud(*tasks, "list", f"--queue={queue_id}", loc)
    assert sorted(t["name"] for t in listed) == [f"{queue}/tasks/t1", f"{queue}/tasks/t2"]

    described = gcloud(*tasks, "describe", "t1", f"--queue={queue_id}", loc)
    assert described["name"] == f"{queue}/tasks/t1"
    assert described["httpRequest"]["url"] == f"{target.url}/work/{api}"
    assert "body" not in described["httpRequest"]  # gcloud asks for the BASIC view
    assert described.get("dispatchCount", 0) == 0

    target.arrived.clear()
    ran = gcloud(*tasks, "run", "t1", f"--queue={queue_id}", loc)
    assert ran["name"] == f"{queue}/tasks/t1"
    assert ran["dispatchCount"] == 1
    assert target.arrived.wait(30)
    request = next(r for r in target.received if r[1] == f"/work/{api}")
    method, _path, headers, body = request
    assert (method, body) == ("POST", f"hi-{api}".encode())
    assert headers["X-Test"] == "yes"
    assert headers["Authorization"].startswith("Bearer ")

    gcloud(*tasks, "delete", "t1", f"--queue={queue_id}", loc)
    assert "NOT_FOUND" in gcloud.fails(*tasks, "describe", "t1", f"--queue={queue_id}", loc)

    gcloud(*queues, "purge", queue_id, loc)
    assert not gcloud(*tasks, "list", f"--queue={queue_id}", loc)

    gcloud(*queues, "delete", queue_id, loc)
    assert "NOT_FOUND" in gcloud.fails(*queues, "describe", queue_id, loc)

    # Every call went to this API version's REST paths, and all were understood.
    seen = list(emulator.rest.requests)[first_request:]
    assert seen, "gcloud did not reach the emulator"
    assert all(path.startswith(f"/{api}/projects/{PROJECT}/") for _m, path, _s in seen), seen
    statuses = {status for _m, _p, status in seen}
    assert statuses <= {200, 404}, seen


def test_missing_gcloud_skips_or_fails_as_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("REDRIVE_REQUIRE_GCLOUD", raising=False)
    with pytest.raises(pytest.skip.Exception):
        _gcloud_binary()
    monkeypatch.setenv("REDRIVE_REQUIRE_GCLOUD", "1")
    with pytest.raises(pytest.fail.Exception):
        _gcloud_binary()


def test_gcloud_buffer_locations_and_the_real_refusals(
    gcloud: Gcloud, emulator: Emulator, target: Target
) -> None:
    """`gcloud tasks buffer`, `gcloud tasks locations list`, and the answers the real service
    gives: a deleted queue's name is not free at once, the 61st forced run of a minute is over
    the quota."""
    loc = f"--location={LOCATION}"
    port = target.url.rsplit(":", 1)[1]
    gcloud(
        "tasks", "queues", "create", "buffered", loc,
        f"--http-uri-override=scheme:http,host:127.0.0.1,port:{port},path:/buffered",
    )  # fmt: skip
    target.arrived.clear()
    gcloud("tasks", "buffer", "--queue=buffered", loc, "--task-id=b1")
    client = tasks_client(emulator.grpc_target, "v2")
    buffered = client.get_task(
        name=f"projects/{PROJECT}/locations/{LOCATION}/queues/buffered/tasks/b1"
    )
    assert buffered.name.endswith("/queues/buffered/tasks/b1")
    assert target.arrived.wait(30)
    assert any(r[1] == "/buffered" for r in target.received)

    listed = gcloud("tasks", "locations", "list")
    assert {"us-central1", "europe-west1"} <= {x["locationId"] for x in listed}

    gcloud("tasks", "queues", "delete", "buffered", loc)
    refusal = gcloud.fails("tasks", "queues", "create", "buffered", loc)
    assert "FAILED_PRECONDITION" in refusal and "existed too recently" in refusal

    gcloud("tasks", "queues", "create", "forced", loc, "--min-backoff=3600s")
    gcloud("tasks", "queues", "pause", "forced", loc)
    gcloud(
        "tasks", "create-http-task", "f1", "--queue=forced", loc, f"--url={target.url}/forced"
    )  # fmt: skip
    used = sum(1 for r in emulator.control.run_log() if r.code.name == "OK")
    task = f"projects/{PROJECT}/locations/{LOCATION}/queues/forced/tasks/f1"
    for _ in range(60 - used):  # the rest of this minute's quota, through the client (faster)
        client.run_task(name=task)
    refusal = gcloud.fails("tasks", "run", "f1", "--queue=forced", loc)
    assert "RESOURCE_EXHAUSTED" in refusal and "Quota exceeded" in refusal
