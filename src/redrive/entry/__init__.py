"""The entry points Cloud Functions calls (main.py wires them): handle_signal and run_job.

Each turns one delivery into pipeline requests (redrive.pipeline) or a sweep (redrive.sweep), logs
one summary, and answers the platform so that it redelivers exactly what may succeed later.
"""

from redrive.entry.on_job import handle_job, run_job
from redrive.entry.on_signal import handle_signal

__all__ = ["handle_job", "handle_signal", "run_job"]
