"""A till's side of the worker's ``POST /authorise/`` (streams/loyalty_web.py): one call, and waiting for service.

A worker answers card requests only once it holds its partitions; until then they are 503,
and a request its card's worker did not answer in time is 504. Asking again is safe: a hold
is placed once per hold id (by default the transaction id).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request


def authorise(port: int, headers: dict[str, str] | None = None, **params: object) -> dict:
    """One till authorisation against the worker on ``port`` (``headers``: a till's or admin key); the JSON answer."""
    url = f"http://127.0.0.1:{port}/authorise/?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, data=b"", method="POST", headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_until_serving(port: int, headers: dict[str, str], timeout: float = 60) -> None:
    """Until the worker holds its partitions, card requests are 503 (try again); a probe of 1 cent for nobody."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            authorise(port, headers, member_id="nobody", txn_id="probe", amount_cents=1)
            return
        except urllib.error.HTTPError as exc:
            if exc.code not in (503, 504) or time.monotonic() > deadline:
                raise
            time.sleep(0.3)
