"""Hostile payload generators: deterministic (seeded) streams of what an attacker, a broken
publisher or a misrouted message could deliver to handle_signal and run_job.

Kinds: random bytes, random JSON, mutated golden fixtures (tests/data/signals/), oversized
payloads, deep nesting, wrong types, unicode and path traversal in names, names of other projects
and of queues outside the allowlist. Each generator returns plain data; delivering it (and
judging the answer) is the test's job.
"""

from __future__ import annotations

import base64
import copy
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "signals"

PROJECT, LOCATION = "demo", "local1"
ALLOWED_QUEUE = f"projects/{PROJECT}/locations/{LOCATION}/queues/hostile"
FORBIDDEN_QUEUE = f"projects/{PROJECT}/locations/{LOCATION}/queues/forbidden"
REAL_TASK = "real-1"
"""A task that exists and has failed in both queues: the one a breach of the allowlist would run."""


def hostile_names() -> list[str]:
    """Task-name-like strings: valid ones inside and outside the allowlist, and traps."""
    allowed = f"{ALLOWED_QUEUE}/tasks/{REAL_TASK}"
    forbidden = f"{FORBIDDEN_QUEUE}/tasks/{REAL_TASK}"
    return [
        allowed,
        forbidden,
        f"{ALLOWED_QUEUE}/tasks/missing-7",
        f"projects/other-project/locations/{LOCATION}/queues/hostile/tasks/{REAL_TASK}",
        f"projects/{PROJECT}/locations/elsewhere/queues/hostile/tasks/{REAL_TASK}",
        f"{ALLOWED_QUEUE}/tasks/../../forbidden/tasks/{REAL_TASK}",
        f"{ALLOWED_QUEUE}/../forbidden/tasks/{REAL_TASK}",
        f"{ALLOWED_QUEUE}/tasks/%2e%2e%2fforbidden",
        f"{ALLOWED_QUEUE}/tasks/{REAL_TASK}/../../../forbidden/tasks/{REAL_TASK}",
        f"{ALLOWED_QUEUE}/tasks/{REAL_TASK}\n{forbidden}",
        f"{ALLOWED_QUEUE}/tasks/{REAL_TASK}\x00{forbidden}",
        f"{forbidden} {allowed}",
        f" {forbidden}",
        f"{ALLOWED_QUEUE}/tasks/rëal-1",
        f"projects/dëmo/locations/{LOCATION}/queues/hostile/tasks/{REAL_TASK}",
        f"{ALLOWED_QUEUE}/tasks/\u202e1-laer",
        f"{ALLOWED_QUEUE}/tasks/" + "a" * 600,
        f"{ALLOWED_QUEUE}/tasks/",
        f"{ALLOWED_QUEUE.upper()}/TASKS/{REAL_TASK}",
        f"//cloudtasks.googleapis.com/{forbidden}",
        f"https://cloudtasks.googleapis.com/v2beta3/{forbidden}:run",
        f"projects/{PROJECT}/locations/{LOCATION}/queues/*/tasks/{REAL_TASK}",
        f"projects/*/locations/*/queues/*/tasks/{REAL_TASK}",
        "projects/demo/locations/local1/queues/hostile",
        "../../etc/passwd",
        "",
    ]


NAMES = hostile_names()
STRINGS = [
    *NAMES,
    "💥" * 40,
    "\ud7ff\ue000\uffff",
    "null",
    "1e309",
    "-1",
    "9" * 400,
    "2026-11-29T08:15:02Z",
    "not-a-time",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "INTERNAL",
    "dead-letter",
    "open",
    "closed",
    '{"task": "' + NAMES[1] + '"}',
    "\\u0000",
    "<script>alert(1)</script>",
    "%s%s%s%n",
]
FIXTURE_DATA = {p.stem: json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*.json"))}


@dataclass
class Gen:
    """A seeded source of hostile values."""

    seed: int
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    # -- scalars and trees -----------------------------------------------------------------
    def scalar(self) -> Any:
        r = self.rng
        pick = r.randrange(9)
        if pick == 0:
            return r.randint(-(2**70), 2**70)
        if pick == 1:
            return r.random() * 10 ** r.randint(-5, 30)
        if pick == 2:
            return r.choice([True, False, None])
        if pick == 3:
            return self.unicode_text()
        return r.choice(STRINGS)

    def unicode_text(self, max_len: int = 40) -> str:
        r = self.rng
        return "".join(
            chr(
                r.choice(
                    [r.randint(0x20, 0x7E), r.randint(0xA0, 0xD7FF), r.randint(0xE000, 0x10FFFF)]
                )
            )
            for _ in range(r.randint(0, max_len))
        )

    def tree(self, depth: int = 0) -> Any:
        r = self.rng
        if depth > 4 or r.random() < 0.35:
            return self.scalar()
        if r.random() < 0.5:
            return [self.tree(depth + 1) for _ in range(r.randint(0, 4))]
        keys = [
            "task",
            "tasks",
            "taskName",
            "name",
            "incident",
            "message",
            "data",
            "status",
            "dispatchCount",
            "dispatch_count",
            "jsonPayload",
            "resource",
            "labels",
            "failedAt",
        ]
        return {
            (r.choice(keys) if r.random() < 0.7 else self.unicode_text(12)): self.tree(depth + 1)
            for _ in range(r.randint(0, 5))
        }

    def mutate(self, value: Any, rounds: int) -> Any:
        """Replace, delete or add leaves of a JSON tree, `rounds` times."""
        out = copy.deepcopy(value)
        for _ in range(rounds):
            out = self._mutate_once(out)
        return out

    def _mutate_once(self, node: Any) -> Any:
        r = self.rng
        if isinstance(node, dict) and node and r.random() < 0.8:
            key = r.choice(list(node))
            action = r.randrange(4)
            if action == 0:
                del node[key]
            elif action == 1:
                node[key] = self.scalar() if r.random() < 0.7 else self.tree(3)
            else:
                node[key] = self._mutate_once(node[key])
            return node
        if isinstance(node, list) and node and r.random() < 0.8:
            i = r.randrange(len(node))
            node[i] = self._mutate_once(node[i])
            return node
        return self.scalar() if r.random() < 0.8 else self.tree(2)

    # -- payloads --------------------------------------------------------------------------
    def deep(self) -> bytes:
        depth = self.rng.choice([1000, 20_000, 100_000])
        if self.rng.random() < 0.5:
            return b"[" * depth + b"]" * depth
        return b'{"task":' * depth + b"1" + b"}" * depth

    def signal_payload(self, max_bytes: int) -> tuple[bytes, dict[str, str]]:
        """A Pub/Sub message's data and attributes."""
        r = self.rng
        attributes: dict[str, str] = {}
        if r.random() < 0.3:
            attributes = {
                r.choice(["task", "taskName", "signal", "kind", self.unicode_text(8)]): str(
                    r.choice(STRINGS)
                )
                for _ in range(r.randint(1, 4))
            }
        kind = r.randrange(100)
        if kind < 15:
            data = r.randbytes(r.randint(0, 2000))
        elif kind < 35:
            data = json.dumps(self.tree()).encode()
        elif kind < 75:
            spec = FIXTURE_DATA[r.choice(list(FIXTURE_DATA))]
            base = spec["data"] if "data" in spec else spec.get("data_text", "")
            mutated = self.mutate(base, r.randint(1, 5))
            data = mutated.encode() if isinstance(mutated, str) else json.dumps(mutated).encode()
            attributes = {**spec.get("attributes", {}), **attributes}
        elif kind < 90:
            name = r.choice(NAMES)
            shape = r.randrange(4)
            if shape == 0:
                data = name.encode("utf-8", "surrogatepass")
            elif shape == 1:
                data = json.dumps({"task": name, "dispatchCount": self.scalar()}).encode()
            elif shape == 2:
                data = json.dumps(
                    {"tasks": [r.choice(NAMES) for _ in range(r.randint(1, 30))]}
                ).encode()
            else:
                data, attributes = b"", {"task": name}
        elif kind < 95:
            data = self.deep()
        else:
            data = (
                b'{"task": "' + NAMES[1].encode() + b'", "pad": "' + b"x" * (max_bytes + 10) + b'"}'
            )
        return data, attributes

    def envelope(self, max_bytes: int) -> tuple[Any, bool]:
        """CloudEvent data: (object, True) for a Pub/Sub envelope, or (garbage, False)."""
        r = self.rng
        if r.random() < 0.15:
            broken: Any = self.tree()
            if isinstance(broken, dict) and r.random() < 0.5:
                broken["message"] = self.tree(2)
            return broken, False
        data, attributes = self.signal_payload(max_bytes)
        message: dict[str, Any] = {
            "data": base64.b64encode(data).decode(),
            "attributes": attributes,
            "messageId": str(r.randint(1, 10**16)) if r.random() < 0.9 else self.scalar(),
            "publishTime": (
                r.choice(["2026-11-29T08:15:02.314Z", "garbage", "9999-12-31T23:59:59Z"])
                if r.random() < 0.2
                else None
            ),
        }
        if r.random() < 0.1:
            message = self.mutate(message, 1)
        return {"subscription": "projects/demo/subscriptions/hostile", "message": message}, True

    def job_body(self, seen_at: str) -> bytes:
        """A run_job request body: a well-formed job, a mutated one, or garbage."""
        r = self.rng
        job = {
            "v": 1,
            "task": r.choice(NAMES),
            "seen_at": seen_at,
            "dispatch_count": 1,
            "signal": {
                "kind": "dead-letter",
                "source": "dead-letter",
                "message_id": "h",
                "publish_time": None,
            },
        }
        kind = r.randrange(100)
        if kind < 40:
            return json.dumps(job).encode()
        if kind < 75:
            return json.dumps(self.mutate(job, r.randint(1, 3))).encode()
        if kind < 85:
            return r.randbytes(r.randint(0, 500))
        if kind < 95:
            return json.dumps(self.tree()).encode()
        return self.deep()


def stream(seed: int, count: int) -> Iterator[Gen]:
    """`count` generators with seeds derived from `seed` (one per payload: reproducible alone)."""
    for i in range(count):
        yield Gen(seed * 1_000_003 + i)
