"""Every setting redrive reads, validated once into a frozen `Settings`.

One registry (`ENV_VARS`) names each environment variable, its default and its meaning; the README
table and the Terraform module are tested against it. `Settings.from_env()` raises one
`ConfigError` that names the variable at fault. An explicit argument wins over the environment.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redrive.core.names import InvalidName, QueueName


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
    ]
}

FIX_CHECKS = ("revision", "static", "none")
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
    max_payload_bytes: int = 1048576
    tasks_emulator_host: str | None = None
    run_emulator_host: str | None = None

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
        if self.fix_check == "static" and self.fix_deployed_at is None:
            raise ConfigError("REDRIVE_FIX_DEPLOYED_AT is required when REDRIVE_FIX_CHECK=static")
        if (self.redrive_queue is None) != (self.job_url is None):
            raise ConfigError(
                "REDRIVE_QUEUE and REDRIVE_JOB_URL go together: set both (queued mode) or neither "
                "(direct mode)"
            )
        if self.job_url is not None and not re.match(r"https?://[^\s/]+", self.job_url):
            raise ConfigError(f"REDRIVE_JOB_URL must be an http(s) URL, got {self.job_url!r}")
        if self.direct_rate_per_s <= 0:
            raise ConfigError("REDRIVE_DIRECT_RATE_PER_S must be > 0")
        if self.max_signal_age_s <= 0:
            raise ConfigError("REDRIVE_MAX_SIGNAL_AGE must be > 0")
        if self.retry_deadline_s < 0 or self.sweep_budget_s <= 0:
            raise ConfigError(
                "REDRIVE_RETRY_DEADLINE_S must be >= 0 and REDRIVE_SWEEP_BUDGET_S > 0"
            )
        if self.job_deadline_s is not None and not 15 <= self.job_deadline_s <= 1800:
            raise ConfigError(
                "REDRIVE_JOB_DEADLINE_S must be whole seconds from 15 to 1800 (Cloud Tasks' "
                f"dispatch deadline range), got {self.job_deadline_s}"
            )
        if self.max_payload_bytes < 1024:
            raise ConfigError("REDRIVE_MAX_PAYLOAD_BYTES must be at least 1024")

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
            "max_payload_bytes": int(
                _float(get("REDRIVE_MAX_PAYLOAD_BYTES"), "REDRIVE_MAX_PAYLOAD_BYTES")
            ),
            "tasks_emulator_host": get("CLOUD_TASKS_EMULATOR_HOST"),
            "run_emulator_host": get("CLOUD_RUN_EMULATOR_HOST"),
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
                "direct mode (REDRIVE_QUEUE unset): RunTask is throttled per instance only; keep "
                "max instances at 1 or use queued mode to respect the project's RunTask quota"
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
    """RFC 3339 (a trailing Z accepted); naive times are taken as UTC."""
    parsed = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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
    except ValueError:
        raise ConfigError(f"{var}: not an RFC 3339 time: {raw!r}") from None


def _float(raw: str | None, var: str) -> float:
    try:
        return float(raw or "")
    except ValueError:
        raise ConfigError(f"{var}: not a number: {raw!r}") from None


def _optional_int(raw: str | None, var: str) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{var}: not a whole number: {raw!r}") from None
