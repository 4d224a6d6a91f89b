"""The hub's configuration: one YAML file, validated at start.

A mistake is reported as ``file: key: problem`` and the CLI exits 2. Secrets are
never written in the file: a key ending in ``_env`` names the environment
variable that holds the value, or, when that variable is unset, ``<NAME>_FILE``
names a file holding it (Docker and Kubernetes secrets): see :func:`read_secret`.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from decimal import Decimal
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(Exception):
    """A configuration file that cannot be used; ``str()`` names file, key and problem."""

    def __init__(self, file: Path | str, key: str, problem: str) -> None:
        self.file, self.key, self.problem = str(file), key, problem
        super().__init__(f"{file}: {key}: {problem}")


def read_secret(env: str) -> str | None:
    """The secret in environment variable ``env``, else in the file ``$<env>_FILE`` names; None if neither is set.

    A trailing newline in the file is not part of the secret. An unreadable file raises
    :class:`ConfigError` naming the variable, never the secret.
    """
    value = os.environ.get(env)
    if value is not None:
        return value
    file = os.environ.get(f"{env}_FILE")
    if not file:
        return None
    try:
        return Path(file).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"${env}_FILE", file, exc.strerror or str(exc)) from None


class Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Store(Strict):
    id: str
    name: str = ""
    floor: str = ""
    area_m2: Decimal | None = None
    brand_counters: list[str] = []


class Place(Strict):
    """A floor, entrance or zone of the mall."""

    id: str
    name: str = ""
    floor: str = ""
    area_m2: Decimal | None = None


class Device(Strict):
    """An RFID reader, people counter or parking gate, and where it stands."""

    id: str
    place: str = Field(description="id of the entrance, zone or store it watches")
    protocol: str = ""
    address: str = Field(default="", description="serial port, MQTT topic or HTTP path")
    direction: Literal["entry", "exit"] | None = Field(default=None, description="car-park gates")
    routes: dict[str, Literal["in", "out"]] = Field(
        default={}, description='Xovis: "<sensor serial>/<counter_id>" -> in or out'
    )
    excludes_staff: bool = Field(default=False, description="people counters that already leave staff out")


class CarPark(Strict):
    id: str
    capacity: int = Field(gt=0)
    gates: list[Device] = []


class FootfallConfig(Strict):
    """How a mall's footfall is rolled up, staff deducted and occupancy corrected (the ``footfall:`` section)."""

    bucket_s: int = Field(default=60, gt=0, description="roll-up interval; 5-60 minute reports add these up")
    allowed_lateness_s: int = Field(default=300, ge=0, description="a tick this late still lands in its interval")
    dedup_horizon_s: int = Field(default=86_400, gt=0, description="how long a re-pushed tick is recognised")
    max_clock_lag_s: int = Field(
        default=172_800,
        gt=0,
        description=(
            "the mall's clock never lags its newest event by more: in a backlog, an input read ahead of the others "
            "closes intervals (the others' events then add late rows) instead of holding every open one in memory"
        ),
    )
    staff_passages: frozenset[str] = Field(default=frozenset(), description="counters at staff-only doors")
    staff_badge_prefixes: tuple[str, ...] = Field(default=(), description="EPC prefixes of staff badges")
    badge_pass_gap_s: float = Field(default=10.0, gt=0, description="reads of one badge closer than this are one pass")
    business_day_starts: dt.time = Field(default=dt.time(5), description="every badge starts the day outside")
    aisle_counters: dict[str, str] = Field(default={}, description="store id -> counter in the aisle before it")
    empties_at: dt.time | None = Field(default=None, description="local time every visitor has left; None: never")
    drift_memory: float = Field(default=0.8, ge=0, lt=1, description="weight of earlier days in the exit scale")
    min_day_visitors: int = Field(default=100, ge=1, description="quieter days teach the drift model nothing")


class ParkingConfig(Strict):
    """When a car park counts as full, and what is one pass of a car (the ``parking:`` section)."""

    alert_share: float = Field(default=0.9, gt=0, le=1, description="occupancy share of capacity that alerts")
    clear_share: float = Field(default=0.85, gt=0, le=1, description="share below which the alert re-arms")
    repeat_read_s: float = Field(default=60.0, ge=0, description="same plate, same way, this close: one pass")

    @model_validator(mode="after")
    def _clears_below_alert(self) -> ParkingConfig:
        if self.clear_share > self.alert_share:
            raise ValueError("clear_share must not exceed alert_share")
        return self


class Mall(Strict):
    id: str
    name: str = ""
    timezone: str = "Asia/Shanghai"
    floors: list[Place] = []
    entrances: list[Place] = []
    zones: list[Place] = []
    stores: list[Store] = []
    rfid_readers: list[Device] = []
    people_counters: list[Device] = []
    car_parks: list[CarPark] = []
    footfall: FootfallConfig = FootfallConfig()
    parking: ParkingConfig = ParkingConfig()

    @model_validator(mode="after")
    def _footfall_names_this_malls_devices(self) -> Mall:
        """A staff passage or aisle counter that is not one of the mall's counters would silently count nothing."""
        counters = {counter.id for counter in self.people_counters}
        for counter in sorted(self.footfall.staff_passages - counters):
            raise ValueError(f"footfall.staff_passages: {counter!r} is not a people counter of mall {self.id}")
        stores = {store.id for store in self.stores}
        for store, counter in self.footfall.aisle_counters.items():
            if store not in stores or counter not in counters:
                raise ValueError(
                    f"footfall.aisle_counters: {store!r}: {counter!r} needs a store and a people "
                    f"counter of mall {self.id}"
                )
        return self


class PresenceTuning(Strict):
    """How RFID reads become presence; defaults suit readers that mostly see doorways."""

    dedup_window_s: float = Field(
        default=2.0, ge=0, description="a tag read again by one reader within this counts once"
    )
    min_dwell_s: float = Field(
        default=5.0, ge=0, description="silence at the old place before a new place is committed"
    )
    absence_timeout_s: float = Field(
        default=7200.0,
        gt=0,
        description="unseen this long = gone; a VIP may shop for over an hour where no reader sees them",
    )
    exit_timeout_s: float = Field(default=120.0, gt=0, description="gone sooner after coming back to an entrance")


class TierRule(Strict):
    """Which alerts a tier gets, and how often."""

    arrival: bool = True
    counter: bool = True
    leaving: bool = True
    include_name: bool = Field(default=False, description="privacy: alerts carry the name only when set")
    cooldown_s: float = Field(default=1800.0, ge=0, description="per member and zone, per kind of alert")
    severity: Literal["info", "warning", "critical"] = "info"

    def allows(self, kind: str) -> bool:
        return {"vip_arrival": self.arrival, "vip_at_counter": self.counter, "vip_leaving": self.leaving}[kind]


class QuietHours(Strict):
    """Local times of the mall when no alert goes out; ``end`` before ``start`` spans midnight."""

    start: dt.time
    end: dt.time

    def covers(self, moment: dt.time) -> bool:
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


class VipPolicy(Strict):
    """What the mall wants to be told about its VIPs. Tiers not listed get no alerts."""

    tiers: dict[str, TierRule] = {"vip": TierRule(), "platinum": TierRule(severity="warning")}
    quiet_hours: list[QuietHours] = []
    presence: PresenceTuning = PresenceTuning()


class RulesConfig(Strict):
    """Loyalty in the worker: where the rules are (validated and re-read by ``streams/core/rules.py``) and its timings."""

    file: Path = Field(default=Path("config/rules.example.yaml"), description="loyalty rule file (YAML)")
    point_value_cents: Decimal = Field(
        default=Decimal(1), ge=0, description="what a point costs the mall, for backtests"
    )
    schedule_seconds: float = Field(
        default=5.0,
        gt=0,
        description="how often the worker checks whether event time reached a new day "
        "(automatic rebates, voucher expiry, birthday gifts and reminders run then)",
    )
    answer_timeout_s: float = Field(default=5.0, gt=0, description="how long a till or service-desk call waits")


class MemberNotifications(Strict):
    """Messages to members (``members.notifications``), and the webhook of the SMS/email platform that sends them."""

    webhook_url: str | None = Field(default=None, description="POSTed every notification as JSON; none: topic only")
    webhook_timeout: float = Field(default=5.0, gt=0)
    webhook_attempts: int = Field(default=5, ge=1, description="tries with exponential backoff before giving up")
    expiring_within_days: int = Field(default=7, ge=1, description="vouchers expiring this soon get a reminder, once")


class Members(Strict):
    source: Path | None = Field(default=None, description="CSV of member master data")


class Kafka(Strict):
    """The broker, and how to reach it: SASL and TLS settings go to faust (aiokafka) and kafka-python alike."""

    mode: Literal["embedded", "external"] = "embedded"
    bootstrap_servers: str = "127.0.0.1:9092"
    partitions: int = Field(default=4, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1)
    data_dir: Path = Path(".state/broker")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str | None = None
    sasl_password_env: str = Field(default="MALLSTREAM_KAFKA_PASSWORD", description="env var holding the SASL password")
    ssl_ca_file: Path | None = Field(
        default=None, description="CA bundle the brokers' certificates are checked against (default: the system's)"
    )
    ssl_cert_file: Path | None = Field(default=None, description="client certificate, for brokers that ask for one")
    ssl_key_file: Path | None = None
    broker_long_polls: bool = Field(
        default=False,
        description=(
            "the brokers hold an empty fetch until data arrives (fetch.max.wait.ms), as Kafka does; noida-db answers "
            "at once, so the worker then paces its fetches itself (empty_fetch_wait_ms). Unset: true in external mode, "
            "false in embedded; set it false for a noida-db run apart"
        ),
    )
    empty_fetch_wait_ms: int = Field(
        default=10,
        ge=0,
        le=1000,
        description=(
            "the worker waits this long after a fetch that brought nothing, unless broker_long_polls; Kafka itself "
            "holds an empty fetch (fetch.max.wait.ms), noida-db answers at once and the consumer would spin"
        ),
    )
    flush_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description=(
            "the worker stops with an error when what it produced is not handed to the broker this long after it "
            "flushes before a commit (nothing is committed: a restarted worker processes the inputs again)"
        ),
    )
    max_request_size: int = Field(
        default=1_048_576,
        ge=65_536,
        description=(
            "the largest record the hub produces, in bytes (the producer's max.request.size; keep it within the "
            "brokers' message.max.bytes): larger batches are split and larger table values paged"
        ),
    )
    unreachable_timeout_s: float = Field(
        default=60.0,
        ge=1,
        description=(
            "a command sending to the broker (replay, import-poslog, simulate) gives up with an error once the broker "
            "has not answered for this long; the gateway keeps spooling and logs the outage"
        ),
    )
    keep_hours: float = Field(
        default=24.0,
        ge=0,
        description=(
            "records are kept at least this long by their timestamps, so a new consumer can still read the last day; "
            "older ones go once every consumer group of the hub has read them (see trim)"
        ),
    )
    trim: Literal["auto", "on", "off"] = Field(
        default="auto",
        description=(
            "the worker deletes what no one needs any more (Kafka DeleteRecords) every trim_every_seconds; "
            "auto: only with the embedded broker, which has no retention of its own"
        ),
    )
    trim_every_seconds: float = Field(default=60.0, gt=0, description="how often the worker trims the topics")
    topic_retention_hours: float = Field(
        default=168.0,
        gt=0,
        description=(
            "external Kafka: retention.ms of the input and internal topics the hub creates (changelogs are compacted)"
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _long_polls_as_kafka_does(cls, data: object) -> object:
        """An unset ``broker_long_polls`` follows the mode: the embedded broker is noida-db, an external one Kafka."""
        if isinstance(data, dict) and data.get("broker_long_polls") is None:
            data = {**data, "broker_long_polls": data.get("mode", "embedded") == "external"}
        return data

    @model_validator(mode="after")
    def _sasl_needs_a_user(self) -> Kafka:
        if self.security_protocol.startswith("SASL") and not self.sasl_username:
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_username "
                f"(the password comes from ${self.sasl_password_env})"
            )
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            raise ValueError("ssl_cert_file and ssl_key_file go together")
        return self

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def trims(self) -> bool:
        """Whether the worker's retention keeper deletes records (streams/retention.py)."""
        return self.trim == "on" or (self.trim == "auto" and self.mode == "embedded")

    @property
    def topic_retention_ms(self) -> int | None:
        """retention.ms for the topics the hub creates: the broker's own retention, on external Kafka only."""
        return round(self.topic_retention_hours * 3_600_000) if self.mode == "external" else None

    @property
    def sasl_password(self) -> str:
        return read_secret(self.sasl_password_env) or ""


class ClickHouse(Strict):
    mode: Literal["embedded", "server"] = "embedded"
    path: Path = Field(default=Path(".state/clickhouse"), description="chdb data directory (embedded)")
    host: str = "127.0.0.1"
    port: int = 8123
    secure: bool = Field(default=False, description="HTTPS (port 8443 on a stock server)")
    verify: bool = Field(default=True, description="check the server's certificate (never turn off in production)")
    ca_file: Path | None = Field(
        default=None, description="CA the server's certificate is checked against (default: the system's)"
    )
    database: str = "mallstream"
    username: str = "default"
    password_env: str = Field(default="MALLSTREAM_CLICKHOUSE_PASSWORD")
    http_port: int | None = Field(
        default=8123,
        ge=1,
        le=65535,
        description=(
            "embedded: the worker serves its engine here as a read-only ClickHouse HTTP endpoint (Grafana's ClickHouse "
            "data source, clickhouse-connect), admitting analyst and admin API keys; null: not served"
        ),
    )
    http_host: str = Field(default="127.0.0.1", description="address the endpoint binds (0.0.0.0: every interface)")
    http_max_execution_s: float = Field(
        default=30.0,
        gt=0,
        description=("the longest a query of the endpoint runs (max_execution_time); a client may ask for less"),
    )
    http_max_result_rows: int = Field(default=1_000_000, ge=1, description="the most rows a query answers")
    http_max_result_mb: int = Field(default=256, ge=1, description="the most MB a query's result takes in the engine")
    http_concurrency: int = Field(
        default=2,
        ge=1,
        description=("queries of the endpoint run at once, each in a thread of its own; more wait their turn"),
    )

    @property
    def password(self) -> str:
        return read_secret(self.password_env) or ""


class Mqtt(Strict):
    """The MQTT broker of gateways, alert delivery and the board; username/password and TLS when it asks for them."""

    mode: Literal["embedded", "external", "off"] = "embedded"
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = Field(default=None, description="none: connect anonymously")
    password_env: str = Field(default="MALLSTREAM_MQTT_PASSWORD", description="env var holding the password")
    tls: bool = Field(default=False, description="MQTT over TLS (port 8883 by convention)")
    ca_file: Path | None = Field(
        default=None, description="CA the broker's certificate is checked against (default: the system's)"
    )
    cert_file: Path | None = Field(default=None, description="client certificate, for brokers that ask for one")
    key_file: Path | None = None

    @model_validator(mode="after")
    def _tls_files(self) -> Mqtt:
        if not self.tls and (self.ca_file or self.cert_file or self.key_file):
            raise ValueError("ca_file, cert_file and key_file need tls: true")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self

    @property
    def password(self) -> str | None:
        return read_secret(self.password_env)


class Sink(Strict):
    batch_rows: int = Field(default=5000, ge=1)
    flush_seconds: float = Field(default=1.0, gt=0)


class VipWorker(Strict):
    """Whether the VIP agents run in a worker process of their own (``mallstream worker --vip``)."""

    separate: bool = Field(
        default=False,
        description=(
            "true: only `mallstream worker --vip` runs the VIP agents, in consumer groups <app_id>-vip*, so counter "
            "staff's alerts never wait behind the other agents or the ClickHouse inserts (one interpreter lock each)"
        ),
    )
    web_port: int = Field(default=6067, description="the VIP worker's /stats/")
    empty_fetch_wait_ms: int = Field(
        default=2,
        ge=0,
        description=(
            "kafka.empty_fetch_wait_ms for the VIP worker: shorter, as a read waits that long at most at each hop"
        ),
    )


class Worker(Strict):
    app_id: str = "mallstream"
    instance_id: str | None = Field(
        default=None, description="stable per worker across restarts; default <hostname>-<web_port>"
    )
    state_dir: Path = Path(".state/worker")
    web_port: int = 6066
    max_body_kb: int = Field(default=1024, ge=1, description="larger request bodies are refused (413)")
    store: Literal["rocksdb", "memory"] | None = Field(
        default=None,
        description="no longer used (every state is a lane's store: SQLite files under state_dir/lanes); "
        "accepted so that older configs still load",
    )
    session_timeout: float = Field(default=10.0, ge=3, description="seconds before a dead worker's partitions move")
    vip_tick_seconds: float = Field(
        default=5.0, gt=0, description="how often VIPs who went quiet are checked for leaving"
    )
    footfall_tick_seconds: float = Field(
        default=5.0, gt=0, description="how often a quiet mall's footfall clock moves on, so intervals close"
    )
    sink: Sink = Sink()
    vip_worker: VipWorker = VipWorker()

    @property
    def group_instance_id(self) -> str:
        """Static group membership: a restarted worker takes its partitions back without a rebalance."""
        return self.instance_id or f"{socket.gethostname()}-{self.web_port}"


class AlertDelivery(Strict):
    """Where alerts go besides the ``alerts`` topic: MQTT per zone (retained, for screens) and a webhook."""

    mqtt_prefix: str = Field(default="mallstream/alerts", description="topics <prefix>/<mall>/<zone>")
    webhook_url: str | None = Field(default=None, description="POSTed every alert as JSON (an SMS gateway, say)")
    webhook_timeout: float = Field(default=5.0, gt=0)
    webhook_attempts: int = Field(default=5, ge=1, description="tries with exponential backoff before giving up")


class GatewayConfig(Strict):
    spool_path: Path = Field(
        default=Path(".state/gateway/spool.sqlite3"), description="disk buffer while Kafka is away"
    )
    spool_max_mb: int = Field(default=1024, ge=1)
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    max_body_mb: int = Field(default=4, ge=1, description="larger pushes are refused (413); ANPR pushes carry pictures")
    health_interval: float = Field(default=10.0, gt=0)


Role = Literal["kiosk", "call_centre", "counter_staff", "supervisor", "till", "analyst", "device", "admin"]

#: The environment variable that, when set, names the keys file instead of ``auth.keys_file``.
KEYS_FILE_ENV = "MALLSTREAM_KEYS_FILE"


class Auth(Strict):
    """Who may call the worker's and the gateway's HTTP endpoints (``mallstream keys`` manages the keys)."""

    keys_file: Path = Field(
        default=Path(".state/auth/keys.json"),
        description=f"API keys, stored hashed; ${KEYS_FILE_ENV} overrides. Every worker and gateway reads it",
    )
    local_key: bool = Field(
        default=True,
        description="keep an admin key for the mallstream command on this machine in local.key "
        "beside the keys file (mode 0600)",
    )
    anonymous_role: Role | None = Field(
        default=None, description="a request without credentials acts in this role; none: refused (401)"
    )
    secret_header: str = Field(default="X-Api-Key", description="header a device or client may send its key in")

    def keys_path(self) -> Path:
        return Path(os.environ.get(KEYS_FILE_ENV) or self.keys_file)


class Privacy(Strict):
    """What personal data may go where; docs/data-map.md lists every field."""

    hash_key_env: str = Field(
        default="MALLSTREAM_HASH_KEY",
        description="env var holding the key of the keyed hash that stands in for EPCs and plates in ClickHouse",
    )
    hash_key_file: Path = Field(
        default=Path(".state/auth/hash.key"),
        description="used when the env var is unset; created with a random key at first use. Workers on several "
        "machines must share one key, or the same tag hashes differently",
    )


# -- customer intelligence (issue 7): read by streams/core/segments.py and customers.py ----------------

#: How many brands and categories a member's preferences show.
TOP_PREFERENCES = 3


class LifecycleRules(Strict):
    """Stage boundaries, checked in the order new, churned, declining, developing, mature."""

    new_days: int = Field(default=90, ge=0, description="first purchase at most this many days ago: new")
    churned_p_alive: float = Field(default=0.2, ge=0, le=1, description="P(alive) under this: churned")
    churned_after_days: int = Field(
        default=365, ge=1, description="no purchase for this many days: churned, whatever P(alive) says"
    )
    declining_p_alive: float = Field(default=0.5, ge=0, le=1, description="P(alive) under this: declining")
    declining_trend: float = Field(
        default=0.5, gt=0, description="recent spend rate under this share of the long-run rate: declining"
    )
    developing_trend: float = Field(
        default=1.5, gt=0, description="recent spend rate over this multiple of the long-run rate: developing"
    )
    mature_min_repeat_days: int = Field(
        default=4, ge=0, description="fewer repeat purchase days than this: still developing"
    )


RfmEdges = tuple[int, int, int, int]


class RfmSegment(Strict):
    """A named box of RFM scores (1-5 each, bounds inclusive)."""

    name: str
    recency: tuple[int, int] = (1, 5)
    frequency: tuple[int, int] = (1, 5)
    monetary: tuple[int, int] = (1, 5)

    def holds(self, r: int, f: int, m: int) -> bool:
        return all(
            low <= score <= high for (low, high), score in ((self.recency, r), (self.frequency, f), (self.monetary, m))
        )


DEFAULT_SEGMENTS = (
    RfmSegment(name="Champions", recency=(4, 5), frequency=(4, 5), monetary=(4, 5)),
    RfmSegment(name="Loyal", recency=(3, 5), frequency=(4, 5)),
    RfmSegment(name="Can't Lose Them", recency=(1, 2), frequency=(4, 5), monetary=(4, 5)),
    RfmSegment(name="At Risk", recency=(1, 2), frequency=(3, 5)),
    RfmSegment(name="New", recency=(4, 5), frequency=(1, 1)),
    RfmSegment(name="Potential Loyalists", recency=(3, 5), frequency=(2, 3)),
    RfmSegment(name="Lost", recency=(1, 1), frequency=(1, 2)),
    RfmSegment(name="Hibernating", recency=(2, 2), frequency=(1, 2)),
)


class RfmRules(Strict):
    """Absolute score cut-offs (a stream has no population to take quantiles of) and the segment boxes."""

    recency_days: RfmEdges = Field(
        default=(14, 30, 60, 120), description="at most 14 days since the last purchase scores 5, ... over 120 scores 1"
    )
    purchase_days: RfmEdges = Field(
        default=(2, 4, 8, 16), description="distinct purchase days: under 2 scores 1, ... 16 or more scores 5"
    )
    spend: RfmEdges = Field(
        default=(500_00, 2_000_00, 5_000_00, 20_000_00), description="net spend in cents: under 500.00 scores 1, ..."
    )
    segments: tuple[RfmSegment, ...] = Field(default=DEFAULT_SEGMENTS, description="first box that holds wins")
    otherwise: str = Field(default="Needs Attention", description="segment of a member no box holds")

    @model_validator(mode="after")
    def _edges_ascend(self) -> RfmRules:
        for name in ("recency_days", "purchase_days", "spend"):
            edges = getattr(self, name)
            if list(edges) != sorted(edges):
                raise ValueError(f"{name} must ascend: {edges}")
        return self


class ChurnSignalRules(Strict):
    """When a member's alert level changes; the gap between the two thresholds is the hysteresis."""

    at_risk_below: float = Field(default=0.5, ge=0, le=1, description="P(alive) under this: at risk")
    recovered_above: float = Field(default=0.7, ge=0, le=1, description="P(alive) at or over this: healthy again")

    @model_validator(mode="after")
    def _band(self) -> ChurnSignalRules:
        if self.recovered_above < self.at_risk_below:
            raise ValueError("recovered_above must not be under at_risk_below, or levels would flap")
        return self


class CustomerRules(Strict):
    """Every boundary of customer intelligence; the defaults are documented field by field."""

    price_band_edges: tuple[Decimal, Decimal, Decimal, Decimal] = Field(
        default=(Decimal(100), Decimal(300), Decimal(800), Decimal(2000)),
        description="unit-price edges of the five bands: under 100, 100-300, 300-800, 800-2000, 2000 and over",
    )
    preference_period_days: int = Field(default=90, ge=3, description="the period top brands and categories describe")
    preference_slots: int = Field(
        default=8, ge=TOP_PREFERENCES, description="brands (and categories) tracked per member"
    )
    trend_fast_half_life_days: float = Field(default=30.0, gt=0, description="half-life of the recent spend rate")
    trend_slow_half_life_days: float = Field(default=180.0, gt=0, description="half-life of the long-run spend rate")
    lifecycle: LifecycleRules = LifecycleRules()
    rfm: RfmRules = RfmRules()
    signals: ChurnSignalRules = ChurnSignalRules()

    @model_validator(mode="after")
    def _checks(self) -> CustomerRules:
        if list(self.price_band_edges) != sorted(self.price_band_edges):
            raise ValueError(f"price_band_edges must ascend: {self.price_band_edges}")
        if self.trend_fast_half_life_days >= self.trend_slow_half_life_days:
            raise ValueError("the recent spend rate needs a shorter half-life than the long-run one")
        return self

    @property
    def preference_half_life_days(self) -> float:
        return self.preference_period_days / 3


class Customers(CustomerRules):
    """The ``customers:`` section: the rules, plus where the fitted churn model lives and how often time is told."""

    params_file: Path = Field(
        default=Path(".state/churn/bgnbd.json"),
        description="BG/NBD parameters written by `mallstream churn fit`; the worker reloads it when it changes",
    )
    tick_every_days: int = Field(
        default=1, ge=1, description="members without a purchase are re-evaluated at the end of every n-th day"
    )
    tick_lateness_hours: float = Field(
        default=1.0,
        ge=0,
        description="a day's tick waits this long after the day's end for receipts that arrive late",
    )
    timer_seconds: float = Field(default=5.0, gt=0, description="how often the worker checks for due ticks")
    pyramid_seconds: float = Field(default=60.0, gt=0, description="how often value-class cut-offs are recomputed")


class Settings(Strict):
    """Everything the hub needs to know about the malls it serves and where its parts run."""

    malls: list[Mall] = Field(min_length=1)
    rules: RulesConfig = RulesConfig()
    members: Members = Members()
    vip: VipPolicy = VipPolicy()
    alerts: AlertDelivery = AlertDelivery()
    notifications: MemberNotifications = MemberNotifications()
    kafka: Kafka = Kafka()
    clickhouse: ClickHouse = ClickHouse()
    mqtt: Mqtt = Mqtt()
    worker: Worker = Worker()
    gateway: GatewayConfig = GatewayConfig()
    customers: Customers = Customers()
    auth: Auth = Auth()
    privacy: Privacy = Privacy()
    source: Path = Field(default=Path("<defaults>"), exclude=True)

    @field_validator("malls")
    @classmethod
    def _unique_ids(cls, malls: list[Mall]) -> list[Mall]:
        _require_unique("mall", [m.id for m in malls])
        _require_unique("store", [s.id for m in malls for s in m.stores])
        return malls

    def mall_of_store(self) -> dict[str, str]:
        """Store id -> mall id, to stamp events whose source only knows the store."""
        return {store.id: mall.id for mall in self.malls for store in mall.stores}

    def resolve(self, path: Path) -> Path:
        """Relative paths in the file are relative to the working directory."""
        return path if path.is_absolute() else Path.cwd() / path


def _require_unique(what: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for ident in ids:
        if ident in seen:
            raise ValueError(f"{what} id {ident!r} appears twice")
        seen.add(ident)


def load(path: Path | str) -> Settings:
    """Read and validate a config file, or raise :class:`ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, "(file)", exc.strerror or str(exc)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise ConfigError(path, where, f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(path, "(top level)", "expected a mapping of sections (malls, kafka, ...)")
    try:
        return Settings.model_validate({**data, "source": path})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(path, key, first["msg"]) from None
