"""Deploy notifications: Cloud Build, Cloud Deploy rollouts, and the plain documented message
`{"deployed": {"service": ..., "queues": [...], "at": ..., "version": ...}}`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

from redrive.core.names import QueueName
from redrive.core.signals._common import (
    SERVICE_RE,
    bound,
    clip,
    optional_str,
    parse_queue,
    parse_time,
    type_name,
)
from redrive.core.signals.model import Deploy, Ignored, Invalid, Parsed, SignalError
from redrive.core.statuses import StatusFilter, StatusFilterError

_T = TypeVar("_T")

SERVICE_SUBSTITUTIONS = ("_SERVICE_NAME", "_SERVICE", "_CLOUD_RUN_SERVICE")
QUEUE_SUBSTITUTIONS = ("_QUEUES", "_QUEUE")
_VERSION_SUBSTITUTIONS = ("COMMIT_SHA", "REVISION_ID", "SHORT_SHA", "TAG_NAME")
_BUILD_KEYS = ("steps", "substitutions", "buildTriggerId", "logUrl", "finishTime", "results")
_DEPLOY_ATTRIBUTES = (
    "Action",
    "ResourceType",
    "DeliveryPipelineId",
    "TargetId",
    "ReleaseId",
    "RolloutId",
    "Location",
    "ProjectNumber",
    "Resource",
)


# --- Cloud Build --------------------------------------------------------------------------------


def looks_like_build(obj: Any, attributes: Mapping[str, str]) -> bool:
    if "buildId" in attributes:
        return True
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("id"), str)
        and "status" in obj
        and any(key in obj for key in _BUILD_KEYS)
    )


def build_status_filter(attributes: Mapping[str, str]) -> Parsed | None:
    """Cloud Build says its status in an attribute: drop unfinished/failed builds undecoded."""
    status = attributes.get("status")
    if "buildId" not in attributes or status is None or status == "SUCCESS":
        return None
    meta = {"build_id": attributes["buildId"][:100], "build_status": status[:40]}
    return _ignored(
        "cloud-build", "cloud-build", f"build status {clip(status)}: only SUCCESS", meta
    )


def parse_build(build: Any, attributes: Mapping[str, str], fallback: datetime) -> Parsed:
    meta: dict[str, str] = {}
    try:
        if not isinstance(build, dict):
            raise SignalError(f"Cloud Build data must be a Build object, got {type_name(build)}")
        return _build(build, attributes, fallback, meta)
    except SignalError as err:
        return Parsed("cloud-build", (Invalid(bound(str(err))),), meta)


def _build(
    build: dict[str, Any], attributes: Mapping[str, str], fallback: datetime, meta: dict[str, str]
) -> Parsed:
    build_id = optional_str(build, "id", "build id") or attributes.get("buildId") or ""
    if build_id:
        meta["build_id"] = build_id[:100]
    status = optional_str(build, "status", "build status") or attributes.get("status")
    if not status:
        raise SignalError("Cloud Build message without a status")
    meta["build_status"] = status[:40]
    if status != "SUCCESS":
        return _ignored(
            "cloud-build", "cloud-build", f"build status {clip(status)}: only SUCCESS", meta
        )

    subs = build.get("substitutions") or {}
    if not isinstance(subs, dict):
        raise SignalError(f"build substitutions must be an object, got {type_name(subs)}")
    trigger = subs.get("TRIGGER_NAME")
    if isinstance(trigger, str) and trigger:
        meta["trigger_name"] = trigger[:100]

    services: list[str] = []
    for key in SERVICE_SUBSTITUTIONS:
        services.extend(_services(subs.get(key), f"substitution {key}"))
    queues: list[QueueName] = []
    for key in QUEUE_SUBSTITUTIONS:
        queues.extend(_queues(subs.get(key), f"substitution {key}"))
    if not services and not queues:
        return _ignored(
            "cloud-build",
            "cloud-build",
            f"build {clip(build_id)} names no service or queue: add the substitution "
            "_SERVICE_NAME=<Cloud Run service> or _QUEUES=<comma-separated full queue names>",
            meta,
        )

    finish = build.get("finishTime")
    deployed_at = fallback if finish is None else parse_time(finish, "build finishTime")
    deploy = Deploy(
        deployed_at=deployed_at,
        source="cloud-build",
        services=_unique(services),
        queues=_unique(queues),
        version=_build_version(build, subs),
    )
    return Parsed("cloud-build", (deploy,), meta)


def _build_version(build: Mapping[str, Any], subs: Mapping[str, Any]) -> str | None:
    images = build.get("images")
    if isinstance(images, list) and images and isinstance(images[0], str) and images[0]:
        return images[0][:300]
    results = build.get("results")
    if isinstance(results, dict) and isinstance(results.get("images"), list):
        for image in results["images"]:
            if isinstance(image, dict) and isinstance(image.get("name"), str) and image["name"]:
                return str(image["name"])[:300]
    for key in _VERSION_SUBSTITUTIONS:
        value = subs.get(key)
        if isinstance(value, str) and value:
            return value[:300]
    tags = build.get("tags")
    if isinstance(tags, list) and tags and all(isinstance(tag, str) for tag in tags):
        return ",".join(tags)[:300]
    return None


# --- Cloud Deploy -------------------------------------------------------------------------------


def is_cloud_deploy(attributes: Mapping[str, str]) -> bool:
    return "Action" in attributes and "ResourceType" in attributes


def parse_cloud_deploy(attributes: Mapping[str, str], fallback: datetime) -> Parsed:
    meta = {k: attributes[k][:200] for k in _DEPLOY_ATTRIBUTES if k in attributes}
    action, resource_type = attributes["Action"], attributes["ResourceType"]
    if resource_type != "Rollout" or action != "Succeed":
        reason = (
            f"Cloud Deploy {clip(resource_type)} {clip(action)}: only a Rollout Succeed deploys"
        )
        return _ignored("cloud-deploy", "cloud-deploy", reason, meta)
    try:
        # A target usually carries the service's name; explicit attributes win when set.
        services = _services(attributes.get("service") or attributes.get("TargetId"), "service")
        queues = _queues(attributes.get("queues"), "attribute queues")
    except SignalError as err:
        return Parsed("cloud-deploy", (Invalid(bound(str(err))),), meta)
    if not services and not queues:
        return _ignored(
            "cloud-deploy", "cloud-deploy", "rollout names no TargetId or service", meta
        )
    version = attributes.get("ReleaseId") or attributes.get("RolloutId") or None
    deploy = Deploy(
        deployed_at=fallback,
        source="cloud-deploy",
        services=_unique(services),
        queues=_unique(queues),
        version=version,
    )
    return Parsed("cloud-deploy", (deploy,), meta)


# --- plain --------------------------------------------------------------------------------------


def looks_like_plain(obj: Any) -> bool:
    return isinstance(obj, dict) and "deployed" in obj


def parse_plain(obj: dict[str, Any], fallback: datetime) -> Parsed:
    try:
        return _plain(obj["deployed"], fallback)
    except SignalError as err:
        return Parsed("deploy", (Invalid(bound(str(err))),), {})


def _plain(body: Any, fallback: datetime) -> Parsed:
    if not isinstance(body, dict):
        raise SignalError(f"'deployed' must be an object, got {type_name(body)}")
    services: list[str] = []
    if body.get("service") is not None:
        if not isinstance(body["service"], str):
            raise SignalError(
                f"deployed.service must be a string, got {type_name(body['service'])}"
            )
        services.extend(_services(body["service"], "deployed.service"))
    if body.get("services") is not None:
        services.extend(_services(body["services"], "deployed.services"))
    queues = _queues(body.get("queues"), "deployed.queues")
    if not services and not queues:
        raise SignalError("'deployed' needs a service or queues")
    at = body.get("at")
    deployed_at = fallback if at is None else parse_time(at, "deployed.at")
    version = optional_str(body, "version", "deployed.version")
    deploy = Deploy(
        deployed_at=deployed_at,
        source="plain",
        services=_unique(services),
        queues=_unique(queues),
        version=version or None,
        statuses=_statuses(body.get("statuses"), "deployed.statuses"),
    )
    return Parsed("deploy", (deploy,), {})


# --- shared -------------------------------------------------------------------------------------


def _split(value: Any, what: str) -> list[str]:
    """A comma-separated string or an array of strings; empty items are dropped."""
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            raise SignalError(f"{what} must hold strings only")
        items = value
    else:
        raise SignalError(f"{what} must be a string or an array, got {type_name(value)}")
    return [item.strip() for item in items if item.strip()]


def _services(value: Any, what: str) -> list[str]:
    services = _split(value, what)
    for service in services:
        if SERVICE_RE.fullmatch(service) is None:
            raise SignalError(
                f"{what}: not a Cloud Run service id or projects/P/locations/L/services/S name: "
                f"{clip(service)}"
            )
    return services


def _statuses(value: Any, what: str) -> StatusFilter | None:
    """A status list (core.statuses) as a comma-separated string or an array of strings."""
    if value is None:
        return None
    if not isinstance(value, str | list) or (
        isinstance(value, list) and not all(isinstance(item, str) for item in value)
    ):
        raise SignalError(f"{what} must be a string or an array of strings, got {type_name(value)}")
    try:
        return StatusFilter.parse(value, what)
    except StatusFilterError as err:
        raise SignalError(str(err)) from None


def _queues(value: Any, what: str) -> list[QueueName]:
    return [parse_queue(item, what) for item in _split(value, what)]


def _unique(items: list[_T]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys(items))


def _ignored(kind: str, source: str, reason: str, meta: dict[str, str]) -> Parsed:
    return Parsed(kind, (Ignored(bound(reason), source),), meta)
