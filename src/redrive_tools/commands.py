"""The `redrive` command: the command line of redrive_tools.cli with its command groups."""

from __future__ import annotations

from redrive_tools.cli import main
from redrive_tools.parked import parked

main.add_command(parked)

__all__ = ["main"]
