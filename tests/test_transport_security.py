"""MQTT over TLS with a password: a test CA made with openssl, a real Mosquitto serving its certificate,
the real gateway and alert delivery logging in, and the noida-db broker receiving what devices sent."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from mallstream.devices.bridges import MqttBridge, start_bridges
from mallstream.devices.gateway import Gateway
from mallstream.devices.spool import Spool
from mallstream.services import mosquitto_password_line
from mallstream.settings import AlertDelivery, Device, Kafka, Mall, Mqtt, Settings
from mallstream.simulators.rfid_frames import zebra_payload, zebra_tag_event
from mallstream.sinks.alerts import AlertPublisher
from mallstream.streams.records import Alert
from mallstream.transports import mqtt_client
from tests.conftest import free_port, running_mosquitto
from tests.test_gateway import consume, tag, until

pytestmark = pytest.mark.timeout(60)

USER, PASSWORD = "hub", "s3cret-for-tests"


@dataclass(frozen=True)
class Authority:
    ca: Path
    server_cert: Path
    server_key: Path


def openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


def make_ca(directory: Path) -> Authority:
    """A CA, and a server certificate it signed for 127.0.0.1 and localhost (names the client checks)."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl(
        directory,
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=mallstream test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    openssl(directory, "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    openssl(
        directory,
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    )
    return Authority(directory / "ca.crt", directory / "server.crt", directory / "server.key")


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory) -> Authority:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def tls_mosquitto(test_ca: Authority, tmp_path: Path):
    """Mosquitto on a free port: TLS only, with the test CA's server certificate, and one user with a password."""
    passwords = tmp_path / "mosquitto.passwd"
    passwords.write_text(mosquitto_password_line(USER, PASSWORD))

    def configured(port: int) -> list[str]:
        conf = tmp_path / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\ncafile {test_ca.ca}\ncertfile {test_ca.server_cert}\n"
            f"keyfile {test_ca.server_key}\nallow_anonymous false\npassword_file {passwords}\n"
            f"persistence false\nuser {getpass.getuser()}\n"
        )  # as root it would become user mosquitto
        return ["-c", str(conf)]

    with running_mosquitto(configured) as port:
        yield port


def broker_settings(port: int, ca: Path | None) -> Mqtt:
    return Mqtt(mode="external", port=port, username=USER, tls=True, ca_file=ca)


def gateway_settings(bootstrap: str, mqtt: Mqtt) -> Settings:
    reader = Device(id="R-vip", place="Z-vip", protocol="zebra-fx", address="zebra/R-vip/data")
    return Settings(
        malls=[Mall(id="mall-1", rfid_readers=[reader])],
        kafka=Kafka(mode="external", bootstrap_servers=bootstrap, partitions=2),
        mqtt=mqtt,
    )


def test_the_gateway_logs_in_over_tls_and_delivers_what_a_reader_publishes(
    broker, tls_mosquitto, test_ca, tmp_path, monkeypatch
):
    # the password from a file named by the environment, as a Docker or Kubernetes secret is mounted
    secret = tmp_path / "mqtt-password"
    secret.write_text(PASSWORD + "\n")
    monkeypatch.delenv("MALLSTREAM_MQTT_PASSWORD", raising=False)
    monkeypatch.setenv("MALLSTREAM_MQTT_PASSWORD_FILE", str(secret))
    mqtt = broker_settings(tls_mosquitto, test_ca.ca)
    settings = gateway_settings(broker, mqtt)
    gateway = Gateway(Spool(tmp_path / "spool.db"), settings.kafka, health_interval=0.5).start()
    bridges = start_bridges(settings, gateway, http_address=("127.0.0.1", 0))
    reader = mqtt_client(mqtt)  # the reader itself logs in the same way
    try:
        [bridge] = bridges
        assert isinstance(bridge, MqttBridge) and bridge.subscribed.wait(10)
        reader.connect("127.0.0.1", tls_mosquitto)
        reader.loop_start()
        now = dt.datetime.now(dt.UTC)
        payload = zebra_payload([zebra_tag_event(tag(1), now), zebra_tag_event(tag(2), now)])
        reader.publish("zebra/R-vip/data", payload, qos=1).wait_for_publish(5)
        reads = consume(broker, "rfid.reads", 2)
        assert sorted(json.loads(r.value)["epc"][-4:] for r in reads) == ["0001", "0002"]
        assert gateway.health()["R-vip"].errors == 0
    finally:
        reader.loop_stop()
        reader.disconnect()
        for bridge in bridges:
            bridge.close()
        gateway.close()


def test_a_wrong_password_is_refused_and_shows_in_the_devices_health(
    broker, tls_mosquitto, test_ca, tmp_path, monkeypatch
):
    monkeypatch.setenv("MALLSTREAM_MQTT_PASSWORD", "not-the-password")
    settings = gateway_settings(broker, broker_settings(tls_mosquitto, test_ca.ca))
    gateway = Gateway(Spool(tmp_path / "spool.db"), settings.kafka)
    bridges = start_bridges(settings, gateway, http_address=("127.0.0.1", 0))
    try:

        def last_error() -> str:
            health = gateway.health().get("R-vip")
            return (health and health.last_error) or ""

        assert until(lambda: "refused the connection: Not authorized" in last_error())
        assert not bridges[0].subscribed.is_set()
    finally:
        for bridge in bridges:
            bridge.close()
        gateway.spool.close()


def test_a_broker_certificate_from_another_ca_is_not_trusted(tls_mosquitto, monkeypatch):
    monkeypatch.setenv("MALLSTREAM_MQTT_PASSWORD", PASSWORD)
    client = mqtt_client(broker_settings(tls_mosquitto, ca=None))  # the system's CAs never signed the test CA
    with pytest.raises(ssl.SSLCertVerificationError):
        client.connect("127.0.0.1", tls_mosquitto)


def test_alerts_are_delivered_over_tls_to_a_screen_that_logged_in(tls_mosquitto, test_ca, monkeypatch):
    monkeypatch.setenv("MALLSTREAM_MQTT_PASSWORD", PASSWORD)
    mqtt = broker_settings(tls_mosquitto, test_ca.ca)
    delivery = AlertDelivery()
    received, subscribed = [], threading.Event()
    screen = mqtt_client(mqtt)
    screen.on_connect = lambda client, *_: client.subscribe(f"{delivery.mqtt_prefix}/#", qos=1)
    screen.on_subscribe = lambda *_: subscribed.set()
    screen.on_message = lambda _c, _u, message: received.append((message.topic, json.loads(message.payload)))
    screen.connect("127.0.0.1", tls_mosquitto)
    screen.loop_start()
    publisher = AlertPublisher(delivery, mqtt)
    try:
        assert subscribed.wait(10)
        alert = Alert(
            alert_id="a-1",
            mall_id="mall-1",
            kind="vip_arrival",
            ts=dt.datetime.now(dt.UTC),
            member_id="M000001",
            zone_id="E-north",
            tier="vip",
        )
        assert until(lambda: publisher.client.is_connected())
        publisher.publish(alert)
        assert until(lambda: bool(received))
        topic, body = received[0]
        assert topic == f"{delivery.mqtt_prefix}/mall-1/E-north" and body["alert_id"] == "a-1"
    finally:
        publisher.close()
        screen.loop_stop()
        screen.disconnect()


def test_the_embedded_mosquitto_takes_only_the_configured_user(tmp_path, monkeypatch):
    from mallstream.services import embedded_mosquitto

    monkeypatch.setenv("MALLSTREAM_MQTT_PASSWORD", PASSWORD)
    port = free_port()
    mqtt = Mqtt(port=port, username=USER)
    settings = Settings(malls=[Mall(id="m")], mqtt=mqtt, kafka=Kafka(data_dir=tmp_path / "broker"))
    with embedded_mosquitto(settings):
        client = mqtt_client(mqtt)
        assert client.connect("127.0.0.1", port) == 0 and client.loop(timeout=2) == 0 and client.is_connected()
        client.disconnect()
        monkeypatch.setenv("MALLSTREAM_MQTT_PASSWORD", "wrong")
        intruder = mqtt_client(mqtt)
        intruder.connect("127.0.0.1", port)
        intruder.loop(timeout=2)
        assert not intruder.is_connected()


def test_kafka_sasl_and_tls_settings_reach_faust_and_every_kafka_python_client(test_ca, monkeypatch):
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    from mallstream.transports import faust_credentials, kafka_options

    monkeypatch.setenv("MALLSTREAM_KAFKA_PASSWORD", "kafka-secret")
    kafka = Kafka(
        mode="external",
        bootstrap_servers="kafka-1:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="mallstream",
        ssl_ca_file=test_ca.ca,
    )
    options = kafka_options(kafka)
    assert (
        options["security_protocol"],
        options["sasl_mechanism"],
        options["sasl_plain_username"],
        options["sasl_plain_password"],
    ) == ("SASL_SSL", "SCRAM-SHA-512", "mallstream", "kafka-secret")
    context = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    for client in (KafkaProducer, KafkaConsumer, KafkaAdminClient):
        assert set(options) <= set(client.DEFAULT_CONFIG), client

    credentials = faust_credentials(kafka)
    aiokafka = credentials_to_aiokafka_auth(credentials)
    assert (
        aiokafka["security_protocol"],
        aiokafka["sasl_mechanism"],
        aiokafka["sasl_plain_username"],
        aiokafka["sasl_plain_password"],
    ) == ("SASL_SSL", "SCRAM-SHA-512", "mallstream", "kafka-secret")
    assert "kafka-secret" not in repr(credentials)  # faust logs credentials by their repr
    assert faust_credentials(Kafka()) is None and kafka_options(Kafka()) == {"security_protocol": "PLAINTEXT"}

    tls_only = credentials_to_aiokafka_auth(faust_credentials(Kafka(security_protocol="SSL", ssl_ca_file=test_ca.ca)))
    assert tls_only["security_protocol"] == "SSL"


def test_a_sasl_protocol_without_a_user_is_a_config_error(tmp_path):
    from mallstream.settings import ConfigError, load

    config = tmp_path / "mall.yaml"
    config.write_text("malls: [{id: m}]\nkafka: {security_protocol: SASL_SSL}\n")
    with pytest.raises(ConfigError, match="kafka: Value error, security_protocol SASL_SSL needs sasl_username"):
        load(config)


def test_clickhouse_over_https_with_a_password_from_a_file(test_ca, tmp_path, monkeypatch):
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    from mallstream.settings import ClickHouse
    from mallstream.sinks.warehouse import open_warehouse
    from tests.chdb_http import serve_chdb

    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(test_ca.server_cert, test_ca.server_key)
    password = tmp_path / "clickhouse-password"
    password.write_text("ch-secret\n")
    monkeypatch.delenv("MALLSTREAM_CLICKHOUSE_PASSWORD", raising=False)
    monkeypatch.setenv("MALLSTREAM_CLICKHOUSE_PASSWORD_FILE", str(password))
    port = free_port()
    config = ClickHouse(mode="server", port=port, secure=True, ca_file=test_ca.ca, username="mallstream")
    with serve_chdb(tmp_path / "db", port, tls=server_side, login=("mallstream", "ch-secret")):
        warehouse = open_warehouse(config)
        try:
            assert 11 in warehouse.migrate()  # the schema, audit log included, over HTTPS
            assert warehouse.query("SELECT count() FROM {db}.audit_log")[1] == [(0,)]
        finally:
            warehouse.close()
        monkeypatch.setenv("MALLSTREAM_CLICKHOUSE_PASSWORD_FILE", str(tmp_path / "nowhere"))
        monkeypatch.setenv("MALLSTREAM_CLICKHOUSE_PASSWORD", "wrong")
        with pytest.raises(DatabaseError, match="Authentication failed"):
            open_warehouse(config).query("SELECT 1")
        with pytest.raises(OperationalError, match="CERTIFICATE_VERIFY_FAILED"):
            open_warehouse(config.model_copy(update={"ca_file": None})).query("SELECT 1")
