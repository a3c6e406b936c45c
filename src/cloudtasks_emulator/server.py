"""`Emulator`: the whole local stack (Cloud Tasks gRPC + REST, Cloud Run fake) in one object."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType

import grpc

from cloudtasks_emulator.clock import Clock
from cloudtasks_emulator.cloudrun import CloudRunFake
from cloudtasks_emulator.control import Control
from cloudtasks_emulator.dispatcher import Dispatcher
from cloudtasks_emulator.grpc_server import cloud_tasks_handlers, make_server
from cloudtasks_emulator.model import QUEUE_REUSE_DELAY_S, Store
from cloudtasks_emulator.oidc import TokenSigner
from cloudtasks_emulator.quota import Quotas
from cloudtasks_emulator.rest import RestServer
from cloudtasks_emulator.service import DEFAULT_LOCATIONS, CloudTasksService


class Emulator:
    """Runs in-process on loopback; port 0 picks free ports. Use as a context manager.

    `quotas` defaults to the production quotas (RunTask 60, list calls 600, every call 6,000,000
    a minute per project, in emulated time); `Quotas.lifted()` removes them for burst tests.
    `queue_reuse_delay_s` is how long a deleted queue's name stays taken (7 days, emulated).
    `oidc_key_file` is a PEM RSA private key to sign OIDC tokens with (default: one generated).
    `locations` replaces the regions ListLocations shows.
    """

    def __init__(  # noqa: PLR0917 - the agreed signature is positional-friendly
        self,
        host: str = "127.0.0.1",
        grpc_port: int = 0,
        rest_port: int = 0,
        time_scale: float = 1.0,
        dedup_window_s: float = 3600.0,
        app_engine_host: str | None = None,
        *,
        quotas: Quotas | None = None,
        queue_reuse_delay_s: float = QUEUE_REUSE_DELAY_S,
        oidc_key_file: str | Path | None = None,
        locations: Sequence[str] = DEFAULT_LOCATIONS,
    ) -> None:
        if dedup_window_s < 0:
            raise ValueError("dedup_window_s must be >= 0")
        if queue_reuse_delay_s < 0:
            raise ValueError("queue_reuse_delay_s must be >= 0")
        self.host = host
        self._grpc_port = grpc_port
        self._rest_port = rest_port
        self.clock = Clock(time_scale)
        self.control = Control()
        self.quotas = quotas or Quotas()
        self.signer = TokenSigner(oidc_key_file)
        self.store = Store(
            self.clock,
            dedup_window_s,
            app_engine_host,
            signer=self.signer,
            queue_reuse_delay_s=queue_reuse_delay_s,
        )
        self.dispatcher = Dispatcher(self.store)
        self.service = CloudTasksService(
            self.store, self.control, self.dispatcher, self.quotas, tuple(locations)
        )
        self.cloudrun = CloudRunFake(self.control, self.clock)
        self.rest = RestServer(
            host,
            rest_port,
            service=self.service,
            control=self.control,
            cloudrun=self.cloudrun,
            signer=self.signer,
        )
        self._grpc: grpc.Server | None = None
        self._started = False

    def start(self) -> Emulator:
        if self._started:
            return self
        self.dispatcher.start()
        try:
            handlers = cloud_tasks_handlers(self.service) + list(self.cloudrun.grpc_handlers())
            self._grpc, self._grpc_port = make_server(self.host, self._grpc_port, handlers)
            self._grpc.start()
            self.rest.start()
        except BaseException:
            self._shutdown()
            raise
        self._started = True
        return self

    def stop(self) -> None:
        if self._started:
            self._started = False
            self._shutdown()

    def _shutdown(self) -> None:
        self.rest.stop()
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait(5)
            self._grpc = None
        self.dispatcher.stop()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def grpc_target(self) -> str:
        return f"{self.host}:{self._grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest.port}"

    def env(self) -> dict[str, str]:
        """Environment that points clients at this emulator. A time-scaled emulator also gives
        its clock (`CLOUD_TASKS_EMULATOR_CLOCK=EPOCH_S,SCALE`: emulated now is EPOCH_S plus the
        wall-clock seconds since then times SCALE), so that an application can keep time with
        the tasks' timestamps."""
        env = {
            "CLOUD_TASKS_EMULATOR_HOST": self.grpc_target,
            "CLOUD_RUN_EMULATOR_HOST": self.grpc_target,
        }
        if self.clock.time_scale != 1.0:
            env["CLOUD_TASKS_EMULATOR_CLOCK"] = (
                f"{self.clock.origin_epoch_s!r},{self.clock.time_scale!r}"
            )
        return env


def serve(  # noqa: PLR0917 - mirrors Emulator's signature
    host: str = "127.0.0.1",
    grpc_port: int = 8123,
    rest_port: int = 8124,
    time_scale: float = 1.0,
    dedup_window_s: float = 3600.0,
    app_engine_host: str | None = None,
    *,
    quotas: Quotas | None = None,
    queue_reuse_delay_s: float = QUEUE_REUSE_DELAY_S,
    oidc_key_file: str | Path | None = None,
    locations: Sequence[str] = DEFAULT_LOCATIONS,
) -> None:
    """Run the emulator until SIGINT/SIGTERM, printing its addresses and the env to export."""
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Emulator(
            host,
            grpc_port,
            rest_port,
            time_scale,
            dedup_window_s,
            app_engine_host,
            quotas=quotas,
            queue_reuse_delay_s=queue_reuse_delay_s,
            oidc_key_file=oidc_key_file,
            locations=locations,
        ) as emu:
            print(f"Cloud Tasks emulator (v2, v2beta3) gRPC: {emu.grpc_target}", flush=True)
            print(f"Cloud Tasks emulator REST: {emu.rest_url}", flush=True)
            if time_scale != 1.0:
                print(f"Emulated time runs {time_scale:g}x real time", flush=True)
            print(f"Quotas per project and minute: {describe_quotas(emu.quotas)}", flush=True)
            print(f"OIDC keys: {emu.rest_url}/.well-known/openid-configuration", flush=True)
            for key, value in emu.env().items():
                print(f"export {key}={value}", flush=True)
            done.wait()
            print("stopping", file=sys.stderr, flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def describe_quotas(quotas: Quotas) -> str:
    def one(value: int | None) -> str:
        return "unlimited" if value is None else f"{value:,}"

    return (
        f"RunTask {one(quotas.run_per_min)}, list calls {one(quotas.list_per_min)}, "
        f"all calls {one(quotas.api_per_min)}"
    )
