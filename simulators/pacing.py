"""Playing events back in their own rhythm: shared by ``mallstream replay`` and the device emulators."""

from __future__ import annotations

import time


class Pacer:
    """Keeps the spacing of event times, ``speed`` times faster (60: a minute per second); 0 never waits."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._first: tuple[float, float] | None = None  # (event time, wall clock) of the first event

    def delay_for(self, event_time: float | None) -> float:
        """Seconds until the event (POSIX seconds) is due; events without a time are due at once."""
        if self.speed <= 0 or event_time is None:
            return 0.0
        if self._first is None:
            self._first = (event_time, time.monotonic())
        first_event, first_wall = self._first
        return max((event_time - first_event) / self.speed - (time.monotonic() - first_wall), 0.0)

    def wait_for(self, event_time: float | None) -> None:
        """Sleep until the event is due (for threads; an event loop awaits :meth:`delay_for`)."""
        delay = self.delay_for(event_time)
        if delay > 0:
            time.sleep(delay)
