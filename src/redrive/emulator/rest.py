"""REST (HTTP/JSON) front end of the emulator: the real API paths for v2 and v2beta3.

Placeholder with the agreed interface; the implementation replaces it."""

from __future__ import annotations

from typing import Any


class RestServer:
    """Serves the Cloud Tasks REST API (and the emulator's control endpoints) in a thread."""

    def __init__(self, host: str, port: int, *, service: Any, control: Any, cloudrun: Any) -> None:
        self.host = host
        self.port = port

    def start(self) -> None:
        """Bind (port 0 picks a free port; `self.port` is the bound port afterwards) and serve."""

    def stop(self) -> None:
        """Stop serving and release the port."""
