"""Every setting redrive reads, validated once into a frozen `Settings`.

One registry (`ENV_VARS`) names each environment variable, its default and its meaning; the README
table and the Terraform module are tested against it. `Settings.from_env()` raises one
`ConfigError` that names the variable at fault. An explicit argument wins over the environment.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redrive.core.names import InvalidName, QueueName
from redrive.core.statuses import StatusFilter, StatusFilterError


class ConfigError(ValueError):
    """A REDRIVE_* variable (or emulator variable) has a value redrive cannot use."""


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str | None
    help: str
    deployed: bool = True
    """False for variables only meaningful locally (emulator hosts)."""


ENV_VARS: dict[str, EnvVar] = {
    v.name: v
    for v in [
        EnvVar(
            "REDRIVE_ALLOWED_QUEUES",
            None,
            "Comma-separated full queue names redrive may act on; "
            "`projects/P/locations/L/queues/*` allows every queue of a location. "
            "Unset or empty: nothing is allowed (logged at start).",
        ),
        EnvVar(
            "REDRIVE_QUEUE",
            None,
            "Full name of the redrive queue. Set together with REDRIVE_JOB_URL to run in queued "
            "mode (one job per failure, throttled by that queue); unset: direct mode.",
        ),
        EnvVar("REDRIVE_JOB_URL", None, "HTTPS URL of the run_job function (queued mode)."),
        EnvVar(
            "REDRIVE_CLAIMS_QUEUE",
            None,
            "Full name of a Cloud Tasks queue kept PAUSED where redrive records its claims (a "
            "named task per forced run of a failure, and per task and fix): it makes 'at most one "
            "forced run per failure' hold across instances and duplicate deliveries. Unset: that "
            "promise holds within one instance only (logged at start).",
        ),
        EnvVar(
            "REDRIVE_PARKING_QUEUE",
            None,
            "Full name of a Cloud Tasks queue kept PAUSED where redrive parks tasks whose next "
            "attempt would be their last (a dead-letter queue made of Cloud Tasks): restored "
            "after a deploy that fixes them, or with `redrive parked restore`. Needs "
            "REDRIVE_CLAIMS_QUEUE. Unset: nothing is parked.",
        ),
        EnvVar(
            "REDRIVE_PARK_MARGIN_S",
            "30",
            "Park only a task whose next attempt is at least this far away, so that Cloud Tasks "
            "cannot dispatch it while it is being parked.",
        ),
        EnvVar(
            "REDRIVE_PARK_BEFORE_EXPIRY_S",
            "86400",
            "Park a task whose next attempt would come within this long of Cloud Tasks' 31-day "
            "retention limit (where it is deleted whatever its retries).",
        ),
        EnvVar(
            "REDRIVE_PARKED_WARN_S",
            "604800",
            "The patrol warns about parked tasks with less than this long left before the "
            "parking queue's own retention limit removes them.",
        ),
        EnvVar(
            "REDRIVE_CANARIES",
            "3",
            "A bulk re-drive (sweep, restore) first re-drives this many tasks of each queue and "
            "goes on with the rest only when they did not fail again; 0: no canaries (at most "
            "20).",
        ),
        EnvVar(
            "REDRIVE_CANARY_FAILURES",
            "1",
            "Canaries of a queue that must fail again to halt its re-drive (1 to "
            "REDRIVE_CANARIES).",
        ),
        EnvVar(
            "REDRIVE_CANARY_TIMEOUT_S",
            "120",
            "How long a bulk re-drive waits for its canaries' forced attempts to be answered; "
            "past it, the rest goes only if at least one canary succeeded.",
        ),
        EnvVar(
            "REDRIVE_JOB_DEADLINE_S",
            None,
            "Dispatch deadline of redrive jobs, in whole seconds (15 to 1800): how long the "
            "redrive queue waits for run_job's answer. Set it to run_job's timeout; unset: Cloud "
            "Tasks' default of 10 minutes.",
        ),
        EnvVar(
            "REDRIVE_JOB_SERVICE_ACCOUNT",
            None,
            "Service account email whose OIDC token the redrive queue sends to run_job.",
        ),
        EnvVar("REDRIVE_TASKS_API", "v2beta3", "Cloud Tasks API version: `v2beta3` or `v2`."),
        EnvVar(
            "REDRIVE_RESPONSE_VIEW",
            "BASIC",
            "Task view requested: `BASIC` (no bodies) or `FULL` (needs cloudtasks.tasks.fullView).",
        ),
        EnvVar(
            "REDRIVE_FIX_CHECK",
            "revision",
            "How to tell a fix is live: `revision` (Cloud Run latest ready revision), `static` "
            "(REDRIVE_FIX_DEPLOYED_AT) or `none`.",
        ),
        EnvVar(
            "REDRIVE_FIX_DEPLOYED_AT",
            None,
            "RFC 3339 time the fix went live; required when REDRIVE_FIX_CHECK=static.",
        ),
        EnvVar(
            "REDRIVE_SERVICE_MAP",
            None,
            "JSON object mapping a Cloud Run service (full name) to the queues that feed it, e.g. "
            '{"projects/p/locations/l/services/billing": '
            '["projects/p/locations/l/queues/billing"]}.',
        ),
        EnvVar(
            "REDRIVE_MAX_SIGNAL_AGE",
            "24h",
            "Signals older than this are skipped as stale (`90s`, `30m`, `24h`, `7d`).",
        ),
        EnvVar("REDRIVE_DRY_RUN", "false", "When true, decide and log but never call RunTask."),
        EnvVar(
            "REDRIVE_DIRECT_RATE_PER_S",
            "1",
            "RunTask calls per second in direct mode "
            "(in-process limit; the project quota is ~1/s).",
        ),
        EnvVar(
            "REDRIVE_RETRY_DEADLINE_S",
            "30",
            "Total time spent retrying one transient Cloud Tasks / Cloud Run fault before FAILED.",
        ),
        EnvVar(
            "REDRIVE_SWEEP_BUDGET_S",
            "480",
            "Time a sweep may spend before it stops cleanly and asks to be delivered again; "
            "keep it below the function timeout.",
        ),
        EnvVar(
            "REDRIVE_SWEEP_STATUSES",
            None,
            "The last-attempt statuses a sweep re-drives when its signal names none, e.g. "
            "`500,503,5xx,UNAVAILABLE`: HTTP statuses, HTTP classes, google.rpc code names. A "
            "listed task that failed otherwise is left to its own retries (`OTHER_STATUS`). "
            "Unset: every failed task.",
        ),
        EnvVar(
            "REDRIVE_METHOD",
            "auto",
            "How a bulk re-drive (a sweep) acts on each task: `run` (RunTask: the task keeps its "
            "name and counters, about 60 a minute), `recreate` (a copy due now, the original "
            "deleted: at the queue's own rate) or `auto` (RunTask while the work fits the RunTask "
            "quota within REDRIVE_AUTO_RUN_WITHIN_S, else re-create). Single failure signals use "
            "RunTask unless their queue's method is `recreate`.",
        ),
        EnvVar(
            "REDRIVE_QUEUE_METHODS",
            None,
            'JSON object of per-queue methods overriding REDRIVE_METHOD, e.g. {"projects/p/'
            'locations/l/queues/billing": "run"} for a target that de-duplicates on the task '
            "name.",
        ),
        EnvVar(
            "REDRIVE_RECREATE_MARGIN_S",
            "300",
            "Re-create only a task whose own next attempt is at least this far away, so that "
            "Cloud Tasks cannot dispatch the original while its copy is made.",
        ),
        EnvVar(
            "REDRIVE_RECREATE_DELAY_S",
            "5",
            "A copy is due this long after it is created: time to delete the original (and, if "
            "the original is gone meanwhile, to withdraw the copy) before it runs.",
        ),
        EnvVar(
            "REDRIVE_AUTO_RUN_WITHIN_S",
            "300",
            "With REDRIVE_METHOD=auto, RunTask is used while every selected task of a queue fits "
            "the RunTask quota within this time.",
        ),
        EnvVar(
            "REDRIVE_RUN_QUOTA_PER_MIN",
            "60",
            "The project's RunTask quota per minute, as REDRIVE_METHOD=auto and the plan's "
            "estimate count it.",
        ),
        EnvVar(
            "REDRIVE_RETRY_DUE_MARGIN_S",
            "60",
            "A task whose own next attempt is due within this many seconds (or overdue: its queue "
            "dispatches it itself) is not forced: SKIPPED_RETRY_DUE.",
        ),
        EnvVar(
            "REDRIVE_CLOCK_SKEW_S",
            "30",
            "Clock difference tolerated between redrive, Cloud Tasks and the senders of signals: "
            "times further ahead than this are refused, and a dispatch this close after a "
            "reported failure is not taken for a retry of it.",
        ),
        EnvVar(
            "REDRIVE_RPC_TIMEOUT_S",
            "20",
            "Timeout of one Cloud Tasks or Cloud Run call. A RunTask that timed out is not called "
            "again for the same failure until twice this time has passed.",
        ),
        EnvVar(
            "REDRIVE_PERMISSION_GRACE_S",
            "0",
            "For this many seconds after an instance starts, PERMISSION_DENIED counts as a grant "
            "still propagating: FAILED and delivered again instead of acknowledged (new IAM "
            "grants take minutes to apply; the Terraform module sets 600).",
        ),
        EnvVar(
            "REDRIVE_MAX_PAYLOAD_BYTES",
            "1048576",
            "Signals larger than this (decoded) are refused as INVALID_SIGNAL.",
        ),
        EnvVar(
            "CLOUD_TASKS_EMULATOR_HOST",
            None,
            "host:port of a local Cloud Tasks emulator (gRPC, no TLS, no credentials).",
            deployed=False,
        ),
        EnvVar(
            "CLOUD_RUN_EMULATOR_HOST",
            None,
            "host:port of the emulator's Cloud Run Admin fake (gRPC, no TLS, no credentials).",
            deployed=False,
        ),
        EnvVar(
            "CLOUD_TASKS_EMULATOR_CLOCK",
            None,
            "The emulator's clock as `EPOCH_S,SCALE` (its env() gives it): redrive's clock then "
            "runs as the emulator's does, time-scaled.",
            deployed=False,
        ),
    ]
}

FIX_CHECKS = ("revision", "static", "none")
METHODS = ("run", "recreate", "auto")
TASKS_APIS = ("v2beta3", "v2")
RESPONSE_VIEWS = ("BASIC", "FULL")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")
_DURATION_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


@dataclass(frozen=True)
class QueueAllowlist:
    """Exact queue names plus `projects/P/locations/L/queues/*` patterns."""

    exact: frozenset[str] = frozenset()
    locations: frozenset[str] = frozenset()

    def allows(self, queue: QueueName) -> bool:
        return str(queue) in self.exact or queue.parent in self.locations

    @property
    def empty(self) -> bool:
        return not self.exact and not self.locations

    @classmethod
    def parse(cls, raw: str, var: str = "REDRIVE_ALLOWED_QUEUES") -> QueueAllowlist:
        exact: set[str] = set()
        locations: set[str] = set()
        for item in (part.strip() for part in raw.split(",")):
            if not item:
                continue
            if item.endswith("/queues/*"):
                parent = item.removesuffix("/queues/*")
                try:
                    QueueName.parse(parent + "/queues/x")
                except InvalidName:
                    raise ConfigError(f"{var}: bad queue pattern {item!r}") from None
                locations.add(parent)
                continue
            try:
                exact.add(str(QueueName.parse(item)))
            except InvalidName as err:
                raise ConfigError(f"{var}: {err}") from None
        return cls(frozenset(exact), frozenset(locations))


@dataclass(frozen=True)
class Settings:
    allowed_queues: QueueAllowlist = field(default_factory=QueueAllowlist)
    redrive_queue: QueueName | None = None
    job_url: str | None = None
    job_service_account: str | None = None
    job_deadline_s: int | None = None
    claims_queue: QueueName | None = None
    parking_queue: QueueName | None = None
    park_margin_s: float = 30.0
    park_before_expiry_s: float = 86400.0
    parked_warn_s: float = 604800.0
    canaries: int = 3
    canary_failures: int = 1
    canary_timeout_s: float = 120.0
    tasks_api: str = "v2beta3"
    response_view: str = "BASIC"
    fix_check: str = "revision"
    fix_deployed_at: datetime | None = None
    service_map: Mapping[str, tuple[QueueName, ...]] = field(default_factory=dict)
    max_signal_age_s: float = 86400.0
    dry_run: bool = False
    direct_rate_per_s: float = 1.0
    retry_deadline_s: float = 30.0
    sweep_budget_s: float = 480.0
    sweep_statuses: StatusFilter | None = None
    """The statuses a sweep re-drives when its signal names none; None: every failure."""
    retry_due_margin_s: float = 60.0
    clock_skew_s: float = 30.0
    rpc_timeout_s: float = 20.0
    permission_grace_s: float = 0.0
    method: str = "auto"
    queue_methods: Mapping[str, str] = field(default_factory=dict)
    recreate_margin_s: float = 300.0
    recreate_delay_s: float = 5.0
    auto_run_within_s: float = 300.0
    run_quota_per_min: float = 60.0
    max_payload_bytes: int = 1048576
    tasks_emulator_host: str | None = None
    run_emulator_host: str | None = None
    emulator_clock: tuple[float, float] | None = None
    """(epoch seconds, scale) of the emulator's clock, or None for the real clock."""

    def __post_init__(self) -> None:
        if self.tasks_api not in TASKS_APIS:
            raise ConfigError(
                f"REDRIVE_TASKS_API must be one of {TASKS_APIS}, got {self.tasks_api!r}"
            )
        if self.response_view not in RESPONSE_VIEWS:
            raise ConfigError(
                f"REDRIVE_RESPONSE_VIEW must be one of {RESPONSE_VIEWS}, got {self.response_view!r}"
            )
        if self.fix_check not in FIX_CHECKS:
            raise ConfigError(
                f"REDRIVE_FIX_CHECK must be one of {FIX_CHECKS}, got {self.fix_check!r}"
            )
        if (self.redrive_queue is None) != (self.job_url is None):
            raise ConfigError(
                "REDRIVE_QUEUE and REDRIVE_JOB_URL go together: set both (queued mode) or neither "
                "(direct mode)"
            )
        if self.job_url is not None and not re.match(r"https?://[^\s/]+", self.job_url):
            raise ConfigError(f"REDRIVE_JOB_URL must be an http(s) URL, got {self.job_url!r}")
        for var, value, low, high, low_open in _numeric_settings(self):
            _in_range(var, value, low, high, low_open=low_open)
        if self.method not in METHODS:
            raise ConfigError(f"REDRIVE_METHOD must be one of {METHODS}, got {self.method!r}")
        for name, method in self.queue_methods.items():
            if method not in METHODS:
                raise ConfigError(
                    f"REDRIVE_QUEUE_METHODS[{name!r}] must be one of {METHODS}, got {method!r}"
                )
        recreating = self.method == "recreate" or "recreate" in self.queue_methods.values()
        if recreating and self.claims_queue is None:
            raise ConfigError(
                "re-create (REDRIVE_METHOD or REDRIVE_QUEUE_METHODS) needs REDRIVE_CLAIMS_QUEUE: "
                "without claims two instances could both copy and delete a task"
            )
        if self.job_deadline_s is not None and not 15 <= self.job_deadline_s <= 1800:
            raise ConfigError(
                "REDRIVE_JOB_DEADLINE_S must be whole seconds from 15 to 1800 (Cloud Tasks' "
                f"dispatch deadline range), got {self.job_deadline_s}"
            )
        if not 0 <= self.canaries <= MAX_CANARIES:
            raise ConfigError(
                f"REDRIVE_CANARIES must be a whole number from 0 (no canaries) to {MAX_CANARIES}, "
                f"got {self.canaries}"
            )
        if self.canaries and not 1 <= self.canary_failures <= self.canaries:
            raise ConfigError(
                f"REDRIVE_CANARY_FAILURES must be from 1 to REDRIVE_CANARIES ({self.canaries}): "
                f"more could never halt, got {self.canary_failures}"
            )
        if not MIN_PAYLOAD_BYTES <= self.max_payload_bytes <= MAX_PAYLOAD_BYTES:
            raise ConfigError(
                f"REDRIVE_MAX_PAYLOAD_BYTES must be from {MIN_PAYLOAD_BYTES} to "
                f"{MAX_PAYLOAD_BYTES} (Pub/Sub's message limit), got {self.max_payload_bytes}"
            )
        if self.fix_check == "static" and self.fix_deployed_at is None:
            raise ConfigError("REDRIVE_FIX_DEPLOYED_AT is required when REDRIVE_FIX_CHECK=static")
        if self.fix_check != "static" and self.fix_deployed_at is not None:
            raise ConfigError(
                "REDRIVE_FIX_DEPLOYED_AT is only read when REDRIVE_FIX_CHECK=static (the check "
                f"is {self.fix_check!r}): unset it, or set REDRIVE_FIX_CHECK=static"
            )
        if self.fix_deployed_at is not None and self.is_future(self.fix_deployed_at):
            raise ConfigError(
                f"REDRIVE_FIX_DEPLOYED_AT is in the future ({self.fix_deployed_at.isoformat()}, "
                f"more than REDRIVE_CLOCK_SKEW_S={self.clock_skew_s:g}s ahead): a fix cannot be "
                "live before it is deployed"
            )
        if self.parking_queue is not None:
            if self.claims_queue is None:
                raise ConfigError(
                    "REDRIVE_PARKING_QUEUE needs REDRIVE_CLAIMS_QUEUE: without claims two "
                    "instances could both park (or restore) the same task"
                )
            if self.parking_queue in (self.redrive_queue, self.claims_queue):
                raise ConfigError(
                    "REDRIVE_PARKING_QUEUE must be a queue of its own, not REDRIVE_QUEUE or "
                    "REDRIVE_CLAIMS_QUEUE"
                )
        if self.claims_queue is not None and self.claims_queue == self.redrive_queue:
            raise ConfigError(
                "REDRIVE_CLAIMS_QUEUE must be a queue of its own, not REDRIVE_QUEUE: claims wait "
                "in a paused queue, jobs in a running one"
            )
        for var, queue in (
            ("REDRIVE_QUEUE", self.redrive_queue),
            ("REDRIVE_CLAIMS_QUEUE", self.claims_queue),
            ("REDRIVE_PARKING_QUEUE", self.parking_queue),
        ):
            if queue is not None and str(queue) in self.allowed_queues.exact:
                raise ConfigError(
                    f"REDRIVE_ALLOWED_QUEUES lists {var} ({queue}): redrive never re-drives its "
                    "own queues; list only the queues of your application"
                )

    def method_for(self, queue: QueueName, *, bulk: bool) -> str:
        """The method for a queue: its override, else REDRIVE_METHOD for a bulk re-drive; a
        single failure uses RunTask unless its queue's method is `recreate`."""
        override = self.queue_methods.get(str(queue))
        if not bulk:
            return "recreate" if override == "recreate" else "run"
        return override or self.method

    @property
    def own_queues(self) -> frozenset[QueueName]:
        """redrive's own queues: never a target, whatever the allowlist's patterns cover."""
        own = (self.redrive_queue, self.claims_queue, self.parking_queue)
        return frozenset(q for q in own if q is not None)

    @property
    def parking(self) -> bool:
        """True when tasks about to use their last attempt are parked (REDRIVE_PARKING_QUEUE)."""
        return self.parking_queue is not None

    def now(self) -> datetime:
        """The current time: the real clock, or the emulator's when CLOUD_TASKS_EMULATOR_CLOCK
        is set (a time-scaled emulator runs ahead of the wall clock)."""
        if self.emulator_clock is None:
            return datetime.now(UTC)
        origin_s, scale = self.emulator_clock
        return datetime.fromtimestamp(origin_s + (time.time() - origin_s) * scale, UTC)

    def is_future(self, when: datetime, now: datetime | None = None) -> bool:
        """True when `when` is later than now plus the tolerated clock skew."""
        return (when - (now or self.now())).total_seconds() > self.clock_skew_s

    @property
    def queued(self) -> bool:
        return self.redrive_queue is not None

    def queues_for_service(self, service: str) -> tuple[QueueName, ...]:
        """Queues feeding a service, by full name or by short service id."""
        if service in self.service_map:
            return self.service_map[service]
        short = service.rsplit("/", 1)[-1]
        found: list[QueueName] = []
        for key, queues in self.service_map.items():
            if key.rsplit("/", 1)[-1] == short:
                found.extend(queues)
        return tuple(dict.fromkeys(found))

    def service_for_queue(self, queue: QueueName) -> str | None:
        for service, queues in self.service_map.items():
            if queue in queues:
                return service
        return None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read every variable of `ENV_VARS` from `env` (default `os.environ`)."""
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name)
            if value is None or value.strip() == "":
                return ENV_VARS[name].default
            return value.strip()

        values: dict[str, object] = {
            "allowed_queues": QueueAllowlist.parse(get("REDRIVE_ALLOWED_QUEUES") or ""),
            "redrive_queue": _queue(get("REDRIVE_QUEUE"), "REDRIVE_QUEUE"),
            "job_url": get("REDRIVE_JOB_URL"),
            "job_service_account": get("REDRIVE_JOB_SERVICE_ACCOUNT"),
            "job_deadline_s": _optional_int(
                get("REDRIVE_JOB_DEADLINE_S"), "REDRIVE_JOB_DEADLINE_S"
            ),
            "claims_queue": _queue(get("REDRIVE_CLAIMS_QUEUE"), "REDRIVE_CLAIMS_QUEUE"),
            "parking_queue": _queue(get("REDRIVE_PARKING_QUEUE"), "REDRIVE_PARKING_QUEUE"),
            "park_margin_s": _float(get("REDRIVE_PARK_MARGIN_S"), "REDRIVE_PARK_MARGIN_S"),
            "park_before_expiry_s": _float(
                get("REDRIVE_PARK_BEFORE_EXPIRY_S"), "REDRIVE_PARK_BEFORE_EXPIRY_S"
            ),
            "parked_warn_s": _float(get("REDRIVE_PARKED_WARN_S"), "REDRIVE_PARKED_WARN_S"),
            "canaries": _int(get("REDRIVE_CANARIES"), "REDRIVE_CANARIES"),
            "canary_failures": _int(get("REDRIVE_CANARY_FAILURES"), "REDRIVE_CANARY_FAILURES"),
            "canary_timeout_s": _float(get("REDRIVE_CANARY_TIMEOUT_S"), "REDRIVE_CANARY_TIMEOUT_S"),
            "tasks_api": (get("REDRIVE_TASKS_API") or "").lower(),
            "response_view": (get("REDRIVE_RESPONSE_VIEW") or "").upper(),
            "fix_check": (get("REDRIVE_FIX_CHECK") or "").lower(),
            "fix_deployed_at": _time(get("REDRIVE_FIX_DEPLOYED_AT"), "REDRIVE_FIX_DEPLOYED_AT"),
            "service_map": parse_service_map(get("REDRIVE_SERVICE_MAP")),
            "max_signal_age_s": parse_duration_s(
                get("REDRIVE_MAX_SIGNAL_AGE") or "", "REDRIVE_MAX_SIGNAL_AGE"
            ),
            "dry_run": parse_bool(get("REDRIVE_DRY_RUN") or "", "REDRIVE_DRY_RUN"),
            "direct_rate_per_s": _float(
                get("REDRIVE_DIRECT_RATE_PER_S"), "REDRIVE_DIRECT_RATE_PER_S"
            ),
            "retry_deadline_s": _float(get("REDRIVE_RETRY_DEADLINE_S"), "REDRIVE_RETRY_DEADLINE_S"),
            "sweep_budget_s": _float(get("REDRIVE_SWEEP_BUDGET_S"), "REDRIVE_SWEEP_BUDGET_S"),
            "sweep_statuses": _statuses(get("REDRIVE_SWEEP_STATUSES")),
            "retry_due_margin_s": _float(
                get("REDRIVE_RETRY_DUE_MARGIN_S"), "REDRIVE_RETRY_DUE_MARGIN_S"
            ),
            "clock_skew_s": _float(get("REDRIVE_CLOCK_SKEW_S"), "REDRIVE_CLOCK_SKEW_S"),
            "rpc_timeout_s": _float(get("REDRIVE_RPC_TIMEOUT_S"), "REDRIVE_RPC_TIMEOUT_S"),
            "permission_grace_s": _float(
                get("REDRIVE_PERMISSION_GRACE_S"), "REDRIVE_PERMISSION_GRACE_S"
            ),
            "method": (get("REDRIVE_METHOD") or "").lower(),
            "queue_methods": parse_queue_methods(get("REDRIVE_QUEUE_METHODS")),
            "recreate_margin_s": _float(
                get("REDRIVE_RECREATE_MARGIN_S"), "REDRIVE_RECREATE_MARGIN_S"
            ),
            "recreate_delay_s": _float(get("REDRIVE_RECREATE_DELAY_S"), "REDRIVE_RECREATE_DELAY_S"),
            "auto_run_within_s": _float(
                get("REDRIVE_AUTO_RUN_WITHIN_S"), "REDRIVE_AUTO_RUN_WITHIN_S"
            ),
            "run_quota_per_min": _float(
                get("REDRIVE_RUN_QUOTA_PER_MIN"), "REDRIVE_RUN_QUOTA_PER_MIN"
            ),
            "max_payload_bytes": _int(
                get("REDRIVE_MAX_PAYLOAD_BYTES"), "REDRIVE_MAX_PAYLOAD_BYTES"
            ),
            "tasks_emulator_host": get("CLOUD_TASKS_EMULATOR_HOST"),
            "run_emulator_host": get("CLOUD_RUN_EMULATOR_HOST"),
            "emulator_clock": _clock(get("CLOUD_TASKS_EMULATOR_CLOCK")),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def startup_warnings(self) -> list[str]:
        warnings = []
        if self.allowed_queues.empty:
            warnings.append(
                "REDRIVE_ALLOWED_QUEUES is unset: no queue is allowed, every task will be "
                "SKIPPED_NOT_ALLOWED"
            )
        if not self.queued:
            warnings.append(
                "direct mode (REDRIVE_QUEUE unset): RunTask is throttled per instance only "
                "(REDRIVE_DIRECT_RATE_PER_S each); use queued mode to share one rate"
            )
        if self.claims_queue is None and not self.dry_run:
            warnings.append(
                "REDRIVE_CLAIMS_QUEUE is unset: 'at most one forced run per failure' holds within "
                "this instance only, not across instances or duplicate job executions"
            )
        return warnings


def parse_duration_s(raw: str, var: str) -> float:
    match = _DURATION_RE.fullmatch(raw.strip().lower())
    if match is None:
        raise ConfigError(f"{var}: not a duration (use e.g. 90s, 30m, 24h, 7d): {raw!r}")
    return float(match.group(1)) * _DURATION_UNITS_S[match.group(2)]


def parse_bool(raw: str, var: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{var}: not a boolean (true/false): {raw!r}")


def parse_time(raw: str) -> datetime:
    """RFC 3339 (a trailing Z accepted; naive times are taken as UTC), returned in UTC.

    Raises ValueError for text that is no time and for a time that has no UTC equivalent
    (0001-01-01T00:00:00+01:00 is before datetime's first instant), so that nothing downstream
    meets a time it cannot convert.
    """
    parsed = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"time out of range once converted to UTC: {raw[:64]!r}") from None


def parse_service_map(raw: str | None) -> dict[str, tuple[QueueName, ...]]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ConfigError(f"REDRIVE_SERVICE_MAP is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError("REDRIVE_SERVICE_MAP must be a JSON object {service: [queue, ...]}")
    result: dict[str, tuple[QueueName, ...]] = {}
    for service, value in data.items():
        queues = [value] if isinstance(value, str) else value
        if not isinstance(queues, list) or not queues:
            raise ConfigError(
                f"REDRIVE_SERVICE_MAP[{service!r}] must be a non-empty list of queues"
            )
        try:
            result[str(service)] = tuple(QueueName.parse(q) for q in queues)
        except InvalidName as err:
            raise ConfigError(f"REDRIVE_SERVICE_MAP[{service!r}]: {err}") from None
    return result


def parse_queue_methods(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ConfigError(f"REDRIVE_QUEUE_METHODS is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError("REDRIVE_QUEUE_METHODS must be a JSON object {queue: method}")
    result: dict[str, str] = {}
    for queue, method in data.items():
        try:
            name = str(QueueName.parse(queue))
        except InvalidName as err:
            raise ConfigError(f"REDRIVE_QUEUE_METHODS: {err}") from None
        if not isinstance(method, str):
            raise ConfigError(f"REDRIVE_QUEUE_METHODS[{queue!r}] must be a string")
        result[name] = method.lower()
    return result


def _statuses(raw: str | None) -> StatusFilter | None:
    if raw is None:
        return None
    try:
        return StatusFilter.parse(raw, "REDRIVE_SWEEP_STATUSES")
    except StatusFilterError as err:
        raise ConfigError(str(err)) from None


def _queue(raw: str | None, var: str) -> QueueName | None:
    if raw is None:
        return None
    try:
        return QueueName.parse(raw)
    except InvalidName as err:
        raise ConfigError(f"{var}: {err}") from None


def _time(raw: str | None, var: str) -> datetime | None:
    if raw is None:
        return None
    try:
        return parse_time(raw)
    except ValueError as err:
        raise ConfigError(f"{var}: not an RFC 3339 time in range: {raw!r} ({err})") from None


def _float(raw: str | None, var: str) -> float:
    try:
        value = float(raw or "")
    except ValueError:
        raise ConfigError(f"{var}: not a number: {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{var}: must be a finite number, got {raw!r}")
    return value


def _int(raw: str | None, var: str) -> int:
    value = _float(raw, var)
    if value != int(value):
        raise ConfigError(f"{var}: must be a whole number, got {raw!r}")
    return int(value)


def _clock(raw: str | None) -> tuple[float, float] | None:
    if raw is None:
        return None
    parts = raw.split(",")
    if len(parts) != 2:
        raise ConfigError(f"CLOUD_TASKS_EMULATOR_CLOCK: want EPOCH_S,SCALE, got {raw!r}")
    origin = _float(parts[0], "CLOUD_TASKS_EMULATOR_CLOCK")
    scale = _float(parts[1], "CLOUD_TASKS_EMULATOR_CLOCK")
    if scale <= 0:
        raise ConfigError(f"CLOUD_TASKS_EMULATOR_CLOCK: the scale must be > 0, got {raw!r}")
    return origin, scale


MIN_PAYLOAD_BYTES = 1024
MAX_CANARIES = 20
"""REDRIVE_CANARIES' upper bound (and a gate job's): canaries are a sample, not a re-drive."""
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
MAX_SIGNAL_AGE_S = 3650 * 86400.0
"""Ten years: beyond any use (Cloud Tasks keeps a task at most 31 days), within datetime's range."""


def _numeric_settings(s: Settings) -> list[tuple[str, float, float, float, bool]]:
    """(variable, value, low, high, low bound open) of every numeric setting."""
    return [
        ("REDRIVE_DIRECT_RATE_PER_S", s.direct_rate_per_s, 0.0, 100_000.0, True),
        ("REDRIVE_MAX_SIGNAL_AGE", s.max_signal_age_s, 0.0, MAX_SIGNAL_AGE_S, True),
        ("REDRIVE_RETRY_DEADLINE_S", s.retry_deadline_s, 0.0, 3600.0, False),
        ("REDRIVE_SWEEP_BUDGET_S", s.sweep_budget_s, 0.0, 3600.0, True),
        ("REDRIVE_RETRY_DUE_MARGIN_S", s.retry_due_margin_s, 0.0, 3600.0, False),
        ("REDRIVE_CLOCK_SKEW_S", s.clock_skew_s, 0.0, 3600.0, False),
        ("REDRIVE_RPC_TIMEOUT_S", s.rpc_timeout_s, 0.1, 300.0, False),
        ("REDRIVE_PERMISSION_GRACE_S", s.permission_grace_s, 0.0, 3600.0, False),
        # Cloud Tasks schedules at most 30 days ahead: a copy and the margin fit well within it.
        ("REDRIVE_RECREATE_MARGIN_S", s.recreate_margin_s, 0.0, 86400.0, False),
        ("REDRIVE_RECREATE_DELAY_S", s.recreate_delay_s, 0.0, 3600.0, False),
        ("REDRIVE_AUTO_RUN_WITHIN_S", s.auto_run_within_s, 0.0, 86400.0, False),
        ("REDRIVE_RUN_QUOTA_PER_MIN", s.run_quota_per_min, 0.0, 1_000_000.0, True),
        # Parking decides from the next attempt's time; a day of margin is beyond any backoff.
        ("REDRIVE_PARK_MARGIN_S", s.park_margin_s, 0.0, 86400.0, False),
        # Retention is 31 days: the margins must leave a task some life to park it in.
        ("REDRIVE_PARK_BEFORE_EXPIRY_S", s.park_before_expiry_s, 0.0, 30 * 86400.0, False),
        ("REDRIVE_PARKED_WARN_S", s.parked_warn_s, 0.0, 30 * 86400.0, False),
        ("REDRIVE_CANARY_TIMEOUT_S", s.canary_timeout_s, 0.0, 3600.0, False),
    ]


def _in_range(var: str, value: float, low: float, high: float, *, low_open: bool) -> None:
    above_low = value > low if low_open else value >= low
    if not (math.isfinite(value) and above_low and value <= high):
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        raise ConfigError(f"{var} must be a finite number {bound} and <= {high:g}, got {value!r}")


def _optional_int(raw: str | None, var: str) -> int | None:
    return None if raw is None else _int(raw, var)
