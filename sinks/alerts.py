"""Alerts to the people who act on them: MQTT topics per zone for screens, and a webhook.

MQTT messages are retained, so a counter screen that (re)connects shows the last
alert of its zone at once. The webhook (an SMS gateway, a paging system) is POSTed
the alert as JSON, retried with exponential backoff; an alert that still fails is
logged and counted, never allowed to stop the stream.
"""

from __future__ import annotations

import datetime as dt
import logging
import urllib.request

import msgspec
import paho.mqtt.client as mqtt
from tenacity import retry, stop_after_attempt, wait_exponential

from mallstream.settings import AlertDelivery, Mqtt
from mallstream.streams.records import Alert, encode
from mallstream.transports import mqtt_client

log = logging.getLogger(__name__)


def zone_topic(prefix: str, alert: Alert) -> str:
    """``<prefix>/<mall>/<zone>``: a screen subscribes to its own zone, a supervisor to ``<prefix>/#``."""
    return f"{prefix}/{alert.mall_id}/{alert.zone_id or 'mall'}"


def post_json(url: str, body: bytes, timeout: float, attempts: int, what: str) -> bool:
    """POST ``body`` as JSON, retried with exponential backoff; False when every attempt failed (logged). Blocking."""

    @retry(stop=stop_after_attempt(attempts), wait=wait_exponential(multiplier=0.2, max=10), reraise=True)
    def post() -> None:
        request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()

    try:
        post()
        return True
    except Exception as exc:  # the webhook's outage must not stop the stream
        log.error("webhook %s refused %s: %s", url, what, exc)
        return False


class AlertPublisher:
    """One MQTT connection for the worker's alerts, and the webhook."""

    def __init__(self, delivery: AlertDelivery, broker: Mqtt) -> None:
        self.delivery = delivery
        self.client: mqtt.Client | None = None
        if broker.mode != "off":
            self.client = mqtt_client(broker)
            self.client.reconnect_delay_set(min_delay=1, max_delay=10)
            self.client.connect_async(broker.host, broker.port)
            self.client.loop_start()

    def publish(self, alert: Alert) -> Alert:
        """Publish on MQTT (QoS 1, retained); returns the alert stamped with its publish time."""
        published = msgspec.structs.replace(alert, published_at=dt.datetime.now(dt.UTC))
        if self.client is not None:
            self.client.publish(zone_topic(self.delivery.mqtt_prefix, alert), encode(published), qos=1, retain=True)
        return published

    def post_webhook(self, alert: Alert) -> bool:
        """POST to the webhook, retrying; False when every attempt failed (logged). Blocking."""
        url = self.delivery.webhook_url
        if not url:
            return True
        return post_json(
            url, encode(alert), self.delivery.webhook_timeout, self.delivery.webhook_attempts, f"alert {alert.alert_id}"
        )

    def close(self) -> None:
        if self.client is not None:
            self.client.loop_stop()
            self.client.disconnect()
