"""Cloud Functions entry points: wiring only, each one line into the redrive package.

Cloud Functions puts only this file's folder on sys.path, so the package's `src` folder is added
here; everything else lives in redrive and imports without Flask.
"""

from __future__ import annotations

import os
import sys
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

import functions_framework

from redrive import entry, runtime

# Settings are read (and start-up warnings logged) when the instance starts, not on the first
# request: a bad REDRIVE_* value fails the start, loudly, instead of every message.
runtime.get_runtime()


@functions_framework.cloud_event
def handle_signal(cloud_event: Any) -> None:
    entry.handle_signal(cloud_event)


@functions_framework.http
def run_job(request: Any) -> tuple[str, int, dict[str, str]]:
    return entry.run_job(request)
