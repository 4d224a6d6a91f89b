"""Driving a gateway live: the emulated devices play a day (or a raw recording) to a gateway run in this process.

The gateway is the real one (spool, bridges, Kafka publisher), bridged to the emulators'
pseudo-terminals, MQTT topics and push paths, and it is stopped only once everything the
devices sent has reached the broker: MQTT messages received, serial lines read to the end,
the spool empty. What ``mallstream simulate day`` without ``--record`` and
``mallstream simulate play-raw`` run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from mallstream.devices.bridges import Bridge, MqttBridge, start_bridges
from mallstream.devices.gateway import Gateway
from mallstream.devices.spool import Spool
from mallstream.settings import Mall, Settings
from mallstream.streams.records import DeviceHealth

from . import mallday
from .emulators import DeviceEmulators, Injected, Sent, WireFaults
from .raw import RawRecorder, count_raw, read_raw

TRUTH_FILE = "truth.json"
#: Frames sent as they are, none dropped, split or corrupted.
NO_FAULTS = WireFaults()


class GatewayNotDrained(RuntimeError):
    """The devices' traffic did not all reach the broker in time."""


@dataclass
class LiveRun:
    """What a live play sent, and what the gateway made of it per device."""

    played: Counter[str]
    units: Counter[str]
    health: dict[str, DeviceHealth]
    transports: dict[str, str]
    injected: Injected
    seconds: float

    def rows(self) -> list[tuple[str, str, int, int, int, int]]:
        """(device, transport, played, units sent, events, rejects) per device and till; tills' receipts
        skip the gateway, so each receipt sent is one event."""
        rows = []
        for device in sorted(self.played):
            health = self.health.get(device)
            events, rejects = (health.events, health.rejects) if health else (self.units[device], 0)
            rows.append((device, self.transports[device], self.played[device], self.units[device], events, rejects))
        return rows


class LiveGateway:
    """The gateway for ``emulators``' devices, ready (subscribed, serial lines open) once constructed."""

    def __init__(self, emulators: DeviceEmulators, ready_timeout: float = 15.0) -> None:
        self.emulators = emulators
        settings = emulators.settings
        conf = settings.gateway
        spool = Spool(settings.resolve(conf.spool_path), max_bytes=conf.spool_max_mb * 1024 * 1024)
        self.gateway = Gateway(spool, settings.kafka, settings.worker.app_id, health_interval=conf.health_interval)
        try:
            self.bridges: list[Bridge] = start_bridges(
                settings, self.gateway, keys=emulators.push_key, http_address=(conf.http_host, conf.http_port)
            )
        except BaseException:
            spool.close()
            raise
        self.gateway.start()
        subscribed = all(
            bridge.subscribed.wait(ready_timeout) for bridge in self.bridges if isinstance(bridge, MqttBridge)
        )
        if not subscribed or not emulators.wait_for_serial_readers(ready_timeout):
            self.close()
            raise GatewayNotDrained(
                f"the gateway did not subscribe to MQTT or open its serial lines within {ready_timeout} s"
            )

    def drain(self, timeout: float = 120.0) -> None:
        """Stop the bridges once they have everything the devices sent, then wait for the spool to empty."""
        deadline = time.monotonic() + timeout
        mqtt_devices = [device for device in self.emulators.sent if self.emulators.transport_kind(device) == "mqtt"]

        def received() -> bool:
            health = self.gateway.health()
            return all(d in health and health[d].frames >= self.emulators.sent[d] for d in mqtt_devices) and not any(
                pty.unread() for pty in self.emulators.terminals.values()
            )

        _wait(received, deadline, "the gateway did not receive every MQTT message and serial byte")
        self._close_bridges()  # a serial bridge closing decodes what its line still holds
        _wait(
            lambda: len(self.gateway.spool) == 0,
            deadline,
            f"the broker did not take everything spooled; still spooled: {len(self.gateway.spool)}",
        )

    def health(self) -> dict[str, DeviceHealth]:
        return self.gateway.health()

    def _close_bridges(self) -> None:
        for bridge in self.bridges:
            bridge.close()
        self.bridges = []

    def close(self) -> None:
        self._close_bridges()
        self.gateway.close()

    def __enter__(self) -> LiveGateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _wait(condition: Callable[[], bool], deadline: float, failure: str) -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise GatewayNotDrained(failure)
        time.sleep(0.05)


def drive(
    settings: Settings,
    play: Callable[[DeviceEmulators], Counter[str]],
    *,
    faults: WireFaults = NO_FAULTS,
    on_send: Callable[[Sent], None] | None = None,
    timeout: float = 120.0,
) -> LiveRun:
    """Start a gateway for emulated devices, let ``play`` send through them, stop once all is delivered."""
    with DeviceEmulators(settings, faults=faults, on_send=on_send) as emulators, LiveGateway(emulators) as gateway:
        started = time.monotonic()
        played = play(emulators)
        gateway.drain(timeout)
        transports = {device: emulators.transport_kind(device) for device in played}
        return LiveRun(
            played,
            Counter(emulators.sent),
            gateway.health(),
            transports,
            emulators.injected,
            time.monotonic() - started,
        )


def simulate_live(
    settings: Settings,
    mall: Mall,
    day: mallday.MallDay,
    *,
    speed: float = 0.0,
    raw_dir: Path | None = None,
    faults: WireFaults = NO_FAULTS,
    progress: bool = True,
    timeout: float = 120.0,
) -> tuple[LiveRun, mallday.GroundTruth]:
    """Simulate the day and play it through the devices; with ``raw_dir``, keep what they sent and the truth there."""
    simulated = mallday.simulate(mall, day)
    records = tqdm(simulated.events, unit="ev", desc="simulate", disable=not progress)
    recorder = RawRecorder(raw_dir) if raw_dir is not None else None
    try:
        run = drive(
            settings, lambda emulators: emulators.play(records, speed), faults=faults, on_send=recorder, timeout=timeout
        )
    finally:
        if recorder is not None:
            recorder.close()
    if raw_dir is not None:
        simulated.truth.write(raw_dir / TRUTH_FILE)
    return run, simulated.truth


def play_raw(
    settings: Settings, raw_dir: Path, *, speed: float = 0.0, progress: bool = True, timeout: float = 120.0
) -> LiveRun:
    """Send a raw recording (:mod:`.raw`) to a gateway again, unit for unit."""
    units = tqdm(read_raw(raw_dir), total=count_raw(raw_dir), unit="unit", desc="play-raw", disable=not progress)
    return drive(settings, lambda emulators: emulators.play_sent(units, speed), timeout=timeout)
