"""Connections to Kafka and MQTT with the credentials and TLS the settings ask for.

Every client of the hub is made here or given these options, so a broker that wants SASL or
TLS gets it from faust (aiokafka), kafka-python (gateway, replay, tills, topic admin) and paho
(gateway, alert delivery, board) alike. Secrets are read from the environment when a client
is made (:func:`mallstream.settings.read_secret`); none is logged: faust prints SASL
credentials by user name only.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import faust
import paho.mqtt.client as mqtt

from .settings import Kafka, Mqtt


def tls_context(ca_file: Path | None, cert_file: Path | None = None, key_file: Path | None = None) -> ssl.SSLContext:
    """A client context that checks the server's certificate and name against ``ca_file`` (else the system's CAs)."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return context


def mqtt_client(conf: Mqtt, client_id: str = "", clean_session: bool | None = None) -> mqtt.Client:
    """A paho client with the broker's username, password and TLS; connecting is the caller's."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
    if conf.username:
        client.username_pw_set(conf.username, conf.password)
    if conf.tls:
        client.tls_set_context(tls_context(conf.ca_file, conf.cert_file, conf.key_file))
    return client


def kafka_options(conf: Kafka) -> dict[str, Any]:
    """The security keywords every kafka-python client (producer, consumer, admin) takes."""
    options: dict[str, Any] = {"security_protocol": conf.security_protocol}
    if conf.security_protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=conf.sasl_mechanism,
            sasl_plain_username=conf.sasl_username,
            sasl_plain_password=conf.sasl_password,
        )
    if conf.tls:
        options["ssl_context"] = tls_context(conf.ssl_ca_file, conf.ssl_cert_file, conf.ssl_key_file)
    return options


def faust_credentials(conf: Kafka) -> faust.auth.Credentials | None:
    """faust's ``broker_credentials`` for the same settings; None for a plaintext broker."""
    context = tls_context(conf.ssl_ca_file, conf.ssl_cert_file, conf.ssl_key_file) if conf.tls else None
    if conf.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=conf.sasl_username, password=conf.sasl_password, ssl_context=context, mechanism=conf.sasl_mechanism
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None
