"""Playing events back in their own rhythm: shared by ``mallstream replay`` and the device emulators."""

from __future__ import annotations

import time


class Pacer:
    """Keeps the spacing of event times, ``speed`` times faster (60: a minute per second); 0 never waits."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._first: tuple[float, float] | None = None  # (event time, wall clock) of the first event

    def wait_for(self, event_time: float | None) -> None:
        """Sleep until the event (POSIX seconds) is due; events without a time go at once."""
        if self.speed <= 0 or event_time is None:
            return
        if self._first is None:
            self._first = (event_time, time.monotonic())
        first_event, first_wall = self._first
        delay = (event_time - first_event) / self.speed - (time.monotonic() - first_wall)
        if delay > 0:
            time.sleep(delay)
