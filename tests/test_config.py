"""Settings as the functions read them: every variable, its errors, the README table."""

from __future__ import annotations

from pathlib import Path

import pytest

from redrive.core.config import ENV_VARS, ConfigError, Settings

ROOT = Path(__file__).resolve().parent.parent
Q = "projects/acme/locations/europe-west1/queues/redrive"


def test_defaults():
    s = Settings.from_env({})
    assert (s.tasks_api, s.response_view, s.fix_check) == ("v2beta3", "BASIC", "revision")
    assert s.queued is False and s.dry_run is False and s.allowed_queues.empty
    assert any("REDRIVE_ALLOWED_QUEUES is unset" in w for w in s.startup_warnings())
    assert any("direct mode" in w for w in s.startup_warnings())


def test_queued_mode_and_values():
    s = Settings.from_env(
        {
            "REDRIVE_QUEUE": Q,
            "REDRIVE_JOB_URL": "https://run-job.example/",
            "REDRIVE_ALLOWED_QUEUES": "projects/acme/locations/europe-west1/queues/*",
            "REDRIVE_TASKS_API": "V2",
            "REDRIVE_RESPONSE_VIEW": "full",
            "REDRIVE_MAX_SIGNAL_AGE": "30m",
            "REDRIVE_DRY_RUN": "yes",
        }
    )
    assert s.queued and str(s.redrive_queue) == Q
    assert (s.tasks_api, s.response_view, s.max_signal_age_s, s.dry_run) == (
        "v2",
        "FULL",
        1800.0,
        True,
    )
    assert s.startup_warnings() == []


@pytest.mark.parametrize(
    ("env", "var"),
    [
        ({"REDRIVE_QUEUE": Q}, "REDRIVE_JOB_URL"),
        ({"REDRIVE_QUEUE": "billing", "REDRIVE_JOB_URL": "https://x/"}, "REDRIVE_QUEUE"),
        ({"REDRIVE_TASKS_API": "v1"}, "REDRIVE_TASKS_API"),
        ({"REDRIVE_RESPONSE_VIEW": "ALL"}, "REDRIVE_RESPONSE_VIEW"),
        ({"REDRIVE_FIX_CHECK": "static"}, "REDRIVE_FIX_DEPLOYED_AT"),
        ({"REDRIVE_FIX_DEPLOYED_AT": "soon"}, "REDRIVE_FIX_DEPLOYED_AT"),
        ({"REDRIVE_MAX_SIGNAL_AGE": "a while"}, "REDRIVE_MAX_SIGNAL_AGE"),
        ({"REDRIVE_DRY_RUN": "maybe"}, "REDRIVE_DRY_RUN"),
        ({"REDRIVE_DIRECT_RATE_PER_S": "0"}, "REDRIVE_DIRECT_RATE_PER_S"),
        ({"REDRIVE_ALLOWED_QUEUES": "projects/x/queues/*"}, "REDRIVE_ALLOWED_QUEUES"),
        ({"REDRIVE_SERVICE_MAP": "[1]"}, "REDRIVE_SERVICE_MAP"),
    ],
)
def test_errors_name_the_variable(env, var):
    with pytest.raises(ConfigError, match=var):
        Settings.from_env(env)


def test_runtime_reads_the_environment_once(monkeypatch):
    from redrive import runtime

    monkeypatch.setenv("REDRIVE_DRY_RUN", "true")
    first = runtime.get_runtime()
    monkeypatch.setenv("REDRIVE_DRY_RUN", "false")
    assert runtime.get_runtime() is first and first.settings.dry_run is True


def test_readme_lists_every_variable_with_its_default():
    text = (ROOT / "README.md").read_text()
    for var in ENV_VARS.values():
        assert f"`{var.name}`" in text, var.name
        if var.default is not None:
            row = next(line for line in text.splitlines() if line.startswith(f"| `{var.name}` |"))
            assert f"`{var.default}`" in row, var.name


def test_readme_lists_every_outcome():
    from redrive.core.outcomes import Outcome

    text = (ROOT / "README.md").read_text()
    for outcome in Outcome:
        assert f"| `{outcome.value}` | {outcome.severity} |" in text, outcome
