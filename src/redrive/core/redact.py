"""What a log line may say about text that came from outside: no URLs, no query strings.

Cloud Tasks' attempt status message can quote the target URL, and a URL's query often carries a
token (`?key=...`, `?sig=...`); error texts from the APIs can quote request URLs too. Every free
text that reaches a record passes through `redact_urls` first.
"""

from __future__ import annotations

import re

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]{1,15}://[^\s\"'<>]+")
_QUERY = re.compile(r"\?[^\s\"'<>]*=[^\s\"'<>]*")
REDACTED_URL = "<url>"


def redact_urls(text: str) -> str:
    """`text` with every URL replaced by `<url>` and any other `?name=value` query by `?…`."""
    return _QUERY.sub("?…", _URL.sub(REDACTED_URL, text))
