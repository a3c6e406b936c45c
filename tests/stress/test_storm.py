"""Storm: many failing tasks signalled within seconds → each re-driven exactly once after the fix,
and never more RunTask calls in any 60-second window than the redrive queue's configured limit.

The measurement is on the emulator's clock, which runs `time_scale` times faster than real time
(the redrive queue's rate limit runs on the same clock): see tests/stress/storm.py.
"""

from __future__ import annotations

import pytest

from tests.stress.storm import max_in_window, run_storm

LIMIT_PER_MIN = 60
"""The default RunTask quota (about 60 a minute per project). The redrive queue runs at
QUEUE_SHARE (80%) of it: see tests/stress/storm.py for why the headroom is needed."""


@pytest.mark.parametrize(
    "tasks",
    [200, pytest.param(1000, marks=pytest.mark.slow)],
)
def test_storm_redrives_each_task_once_within_the_rate(tmp_path, tasks):
    result = run_storm(tasks, limit_per_min=LIMIT_PER_MIN, logs=tmp_path)

    assert result.outcomes == {"QUEUED": tasks}
    assert result.job_outcomes == {"DISPATCHED": tasks}
    assert len(result.runs_per_task) == tasks
    assert set(result.runs_per_task.values()) == {1}
    assert result.run_calls == tasks  # no RunTask beyond the one per task
    assert result.max_in_window <= LIMIT_PER_MIN, result


def test_window_count_is_the_busiest_half_open_minute():
    assert max_in_window([]) == 0
    assert max_in_window([0.0, 59.9, 60.0]) == 2
    assert max_in_window([float(t) for t in range(120)]) == 60
    assert max_in_window([5.0, 1.0, 3.0, 200.0]) == 3
