"""The worker's ClickHouse HTTP endpoint over the embedded engine, through official clients and raw requests.

Every panel of every dashboard through it after a simulated day: tests/test_dashboards_pipeline.py.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import struct
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import lz4.block
import lz4.frame
import pytest
import yaml
from backports import zstd
from clickhouse_connect.driver.exceptions import DatabaseError

from mallstream.services import port_open
from tests.conftest import REPO, WorkerProcess, cli, running_broker, write_config

pytestmark = [pytest.mark.pipeline, pytest.mark.timeout(180)]

JS_CLIENT = REPO / "tests" / "js"
#: the hub's bound on a query's time in these tests (clickhouse.http_max_execution_s)
TIME_LIMIT_S = 2
ROW_LIMIT = 100_000


def create_key(config: Path, role: str, name: str) -> str:
    return re.search(r"msk_\S+", cli(config, "keys", "create", "--role", role, "--name", name).stdout)[0]


def wait_for_endpoint(port: int, worker: WorkerProcess) -> None:
    deadline = time.monotonic() + 60
    while not port_open("127.0.0.1", port):
        assert time.monotonic() < deadline and worker.process.poll() is None, "the endpoint never opened"
        time.sleep(0.2)


class Endpoint:
    def __init__(self, config: Path, port: int, analyst: str, counter_staff: str) -> None:
        self.config, self.port, self.analyst, self.counter_staff = config, port, analyst, counter_staff

    def client(self, key: str | None = None):
        return clickhouse_connect.get_client(
            host="127.0.0.1", port=self.port, username="grafana", password=key or self.analyst
        )

    def post(
        self, body: bytes | str, key: str | None = None, headers: dict | None = None, **params: object
    ) -> tuple[int, dict[str, str], bytes]:
        """A raw request as a ClickHouse client sends it; basic auth with ``key`` unless ``headers`` say otherwise."""
        auth = {"Authorization": "Basic " + base64.b64encode(f"grafana:{key or self.analyst}".encode()).decode()}
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/?{urllib.parse.urlencode(params)}",
            data=body.encode() if isinstance(body, str) else body,
            method="POST",
            headers={**auth, **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory) -> Iterator[Endpoint]:
    tmp = tmp_path_factory.mktemp("clickhouse_http")
    with running_broker(tmp / "broker") as bootstrap:
        config = write_config(
            tmp, bootstrap, clickhouse={"http_max_execution_s": TIME_LIMIT_S, "http_max_result_rows": ROW_LIMIT}
        )
        port = yaml.safe_load(config.read_text())["clickhouse"]["http_port"]
        analyst, staff = create_key(config, "analyst", "grafana"), create_key(config, "counter_staff", "desk")
        with WorkerProcess(config, tmp / "worker.log") as worker:
            wait_for_endpoint(port, worker)
            yield Endpoint(config, port, analyst, staff)


def test_clickhouse_connect_reads_the_hubs_tables_with_parameters_and_every_kind_of_column(endpoint):
    client = endpoint.client()
    assert client.protocol_version == 54405  # its probe found the BlockInfo a server writes for a revision
    assert client.command("SELECT currentDatabase()") == "mallstream"
    assert {"places", "ledger_entries"} <= {row[0] for row in client.query("SHOW TABLES").result_rows}
    places = client.query(
        "SELECT count() FROM places WHERE mall_id = {mall:String}", parameters={"mall": "sh-xujiahui"}
    )
    assert places.result_rows[0][0] > 0
    row = client.query(
        "WITH {n:UInt32} AS n SELECT n, [n, 2] AS a, map('k', n) AS m, toLowCardinality('lc') AS l, "
        "CAST(NULL AS Nullable(Int8)) AS z, toDecimal64(12.34, 2) AS d, (1, 'x')::Tuple(a UInt8, b String) AS t, "
        "toDateTime64('2026-11-23 10:00:00.123', 3, 'Asia/Shanghai') AS at",
        parameters={"n": 7},
    ).result_rows[0]
    assert row[:5] == (7, [7, 2], {"k": 7}, "lc", None) and str(row[5]) == "12.34" and row[6] == {"a": 1, "b": "x"}
    assert row[7].isoformat() == "2026-11-23T10:00:00.123000+08:00"
    # several Native blocks, each framed
    many = client.query("SELECT number, toString(number) AS s, [number] AS a FROM numbers(99000) ORDER BY number")
    assert many.row_count == 99000 and many.result_rows[-1] == (98999, "98999", [98999])


def test_the_engine_writes_each_format_and_headers_say_what_came(endpoint):
    status, headers, body = endpoint.post("SELECT 1::UInt8 AS x, 'a' AS s", default_format="RowBinaryWithNamesAndTypes")
    assert status == 200 and body == b"\x02\x01x\x01s\x05UInt8\x06String\x01\x01a"
    assert headers["X-ClickHouse-Format"] == "RowBinaryWithNamesAndTypes"
    assert json.loads(headers["X-ClickHouse-Summary"])["read_rows"] == "1"
    assert headers["X-ClickHouse-Timezone"] and headers["X-ClickHouse-Server-Display-Name"]
    assert headers["X-ClickHouse-Query-Id"]
    _, headers, body = endpoint.post("SELECT 2 AS x FORMAT JSONEachRow", query_id="q-17")
    assert body == b'{"x":2}\n' and headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert headers["X-ClickHouse-Query-Id"] == "q-17"
    _, _, body = endpoint.post("", query="SELECT 3 AS x", default_format="JSON")
    assert json.loads(body)["data"] == [{"x": 3}]
    _, _, body = endpoint.post(
        "SELECT {a:String} AS a FORMAT TabSeparatedWithNamesAndTypes", param_a="b\\tc"
    )  # escaped, as ClickHouse takes them
    assert body == b"a\nString\nb\\tc\n"
    _, headers, body = endpoint.post("SELECT timezone()", session_timezone="Asia/Shanghai")
    assert body == b"Asia/Shanghai\n" and headers["X-ClickHouse-Timezone"] == "Asia/Shanghai"
    with urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}/ping", timeout=10) as ping:
        assert ping.read() == b"Ok.\n"
    get = urllib.request.Request(
        f"http://127.0.0.1:{endpoint.port}/?query=SELECT%20version()",
        headers={"X-ClickHouse-User": "grafana", "X-ClickHouse-Key": endpoint.analyst},
    )
    with urllib.request.urlopen(get, timeout=10) as answer:
        assert re.fullmatch(rb"\d+\.\d+\.\d+\.\d+\n", answer.read())


def test_native_for_clickhouse_go_has_block_info_and_serialization_kinds(endpoint):
    """What Grafana's data source (clickhouse-go, client_protocol_version 54460) decodes, byte for byte."""
    query = (
        "SELECT 'ab' AS s, 7::UInt32 AS n, [1, 2]::Array(UInt8) AS a, toLowCardinality('x') AS l, "
        "CAST(NULL AS Nullable(Int8)) AS z"
    )
    status, _, body = endpoint.post(query, default_format="Native", client_protocol_version=54460)
    assert status == 200

    def column(name: str, kind: str, data: bytes) -> bytes:
        return bytes([len(name)]) + name.encode() + bytes([len(kind)]) + kind.encode() + b"\x00" + data

    block_info = b"\x01\x00\x02\xff\xff\xff\xff\x00"  # is_overflows false, bucket_num -1, end
    # keys' version, UInt8 indexes with new keys (the default, then 'x'), one index
    low_cardinality = struct.pack("<QQQ", 1, 1 << 9 | 1 << 10, 2) + b"\x00\x01x" + struct.pack("<Q", 1) + b"\x01"
    assert body == block_info + b"\x05\x01" + b"".join(
        (
            column("s", "String", b"\x02ab"),
            column("n", "UInt32", struct.pack("<I", 7)),
            column("a", "Array(UInt8)", struct.pack("<Q", 2) + b"\x01\x02"),
            column("l", "LowCardinality(String)", low_cardinality),
            column("z", "Nullable(Int8)", b"\x01\x00"),
        )
    )
    # clickhouse-go's first query, whose answer it decodes at its own revision
    status, _, body = endpoint.post(
        "SELECT displayName(), version(), revision(), timezone()",
        default_format="Native",
        client_protocol_version=54460,
    )
    assert status == 200 and body.startswith(block_info + b"\x04\x01\x0ddisplayName()\x06String\x00")


def test_compression_both_ways_as_clients_ask(endpoint):
    query = "SELECT number FROM numbers(1000) FORMAT TSV"
    plain = b"".join(b"%d\n" % n for n in range(1000))
    for encoding, decode in (("gzip", gzip.decompress), ("lz4", lz4.frame.decompress), ("zstd", zstd.decompress)):
        status, headers, body = endpoint.post(
            query, headers={"Accept-Encoding": f"br;q=1, {encoding}"}, enable_http_compression=1
        )
        assert status == 200 and headers["Content-Encoding"] == encoding and decode(body) == plain
    _, headers, body = endpoint.post(query, headers={"Accept-Encoding": "gzip"})  # not asked with the setting
    assert "Content-Encoding" not in headers and body == plain
    _, _, body = endpoint.post(gzip.compress(query.encode()), headers={"Content-Encoding": "gzip"})
    assert body == plain
    # ClickHouse's own compressed block (decompress=1): checksum (not checked), method lz4, sizes, data
    data = lz4.block.compress(query.encode(), store_size=False)
    block = bytes(16) + struct.pack("<BII", 0x82, 9 + len(data), len(query)) + data
    _, _, body = endpoint.post(block, decompress=1)
    assert body == plain


def test_writes_files_urls_and_other_settings_are_refused(endpoint):
    client = endpoint.client()
    places = client.command("SELECT count() FROM places")
    refusals = {
        "INSERT INTO places SELECT * FROM places": "READONLY",
        "CREATE TABLE t (x UInt8) ENGINE = Memory": "READONLY",
        "DROP TABLE places": "READONLY",
        "ALTER TABLE places DELETE WHERE 1": "READONLY",
        "TRUNCATE TABLE places": "READONLY",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')": "ACCESS_DENIED",
        "SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')": "ACCESS_DENIED",
        "SELECT length(file('/etc/passwd'))": "ACCESS_DENIED",  # the scalar file(), which readonly lets through
        "SELECT 1 INTO OUTFILE '/tmp/mallstream-outfile.tsv'": "ACCESS_DENIED",
        "SELECT * FROM remote('127.0.0.1:9000', system.one)": "ACCESS_DENIED",
        "SELECT 1 SETTINGS readonly = 0": "READONLY",
        "SET readonly = 0": "SYNTAX_ERROR",
    }
    for sql, name in refusals.items():
        status, headers, body = endpoint.post(sql)
        assert status >= 400 and f"({name})" in body.decode(), (sql, body)
        assert body.startswith(f"Code: {headers['X-ClickHouse-Exception-Code']}. DB::Exception: ".encode())
    assert not Path("/tmp/mallstream-outfile.tsv").exists()
    assert client.command("SELECT count() FROM places") == places
    for setting, value in (("max_threads", 64), ("allow_ddl", 1), ("readonly", 0), ("max_execution_time", 3600)):
        status, _, body = endpoint.post("SELECT 1", **{setting: value})
        assert status == 403 and body.startswith(b"Code: 164. DB::Exception: "), (setting, body)
    status, _, body = endpoint.post("SELECT 1", max_execution_time=1, output_format_json_quote_64bit_integers=0)
    assert status == 200 and body == b"1\n"
    with pytest.raises(DatabaseError, match="READONLY"):
        client.command("DROP TABLE places")


def test_the_workers_sql_view_refuses_reading_or_writing_files_too(endpoint):
    for sql in ("SELECT length(file('/etc/passwd'))", "SELECT 1 INTO OUTFILE '/tmp/mallstream-outfile.tsv'"):
        result = cli(endpoint.config, "sql", sql, check=False)
        assert result.returncode != 0 and "Not enough privileges" in result.stderr, result
    assert not Path("/tmp/mallstream-outfile.tsv").exists()
    assert cli(endpoint.config, "sql", "SELECT count() > 0 AS any FROM {db}.places").stdout == "any\n1\n"


def test_keys_the_wrong_one_is_401_and_the_wrong_role_403(endpoint):
    status, _headers, body = endpoint.post("SELECT 1", key="msk_not-a-key")
    assert status == 401 and body.startswith(b"Code: 516. DB::Exception: grafana: Authentication failed")
    status, _, body = endpoint.post("SELECT 1", key=endpoint.counter_staff)
    assert status == 403 and body.startswith(b"Code: 497. DB::Exception: grafana: Not enough privileges")
    status, _, _ = endpoint.post("SELECT 1", headers={"Authorization": ""})
    assert status == 401
    # ClickHouse's other ways: user/password in the URL, X-ClickHouse-User/Key headers
    assert endpoint.post("SELECT 1", headers={"Authorization": ""}, user="grafana", password=endpoint.analyst)[0] == 200
    assert (
        endpoint.post(
            "SELECT 1",
            headers={"Authorization": "", "X-ClickHouse-User": "grafana", "X-ClickHouse-Key": endpoint.analyst},
        )[0]
        == 200
    )
    assert (
        endpoint.post(
            "SELECT 1",
            headers={"Authorization": "", "X-ClickHouse-User": "grafana", "X-ClickHouse-Key": endpoint.counter_staff},
        )[0]
        == 403
    )
    with pytest.raises(DatabaseError, match="516"):
        endpoint.client("msk_not-a-key")


def test_time_and_result_size_are_bounded_and_the_worker_answers_meanwhile(endpoint):
    started = time.monotonic()
    status, headers, body = endpoint.post("SELECT sum(cityHash64(number)) FROM numbers(100000000000)")
    assert status == 500 and b"(TIMEOUT_EXCEEDED)" in body and headers["X-ClickHouse-Exception-Code"] == "159"
    assert time.monotonic() - started < TIME_LIMIT_S + 10
    status, _, body = endpoint.post("SELECT sleepEachRow(0.5) FROM numbers(10)", max_block_size=1, max_execution_time=1)
    assert status == 500 and b"(TIMEOUT_EXCEEDED)" in body
    status, _, body = endpoint.post(f"SELECT number FROM numbers({ROW_LIMIT + 1})")
    assert status == 500 and b"(TOO_MANY_ROWS_OR_BYTES)" in body
    status, _, body = endpoint.post("SELECT number FROM numbers(100)", max_result_rows=10)
    assert status == 500 and b"(TOO_MANY_ROWS_OR_BYTES)" in body
    status, _, body = endpoint.post(
        "SELECT repeat(toString(number), 100) FROM numbers(10000)", max_result_bytes=100_000
    )
    assert status == 500 and b"(TOO_MANY_ROWS_OR_BYTES)" in body


def run_js(endpoint_url: str, key: str, queries: list[dict], tmp_path: Path) -> dict:
    """The official JavaScript client (tests/js, installed by scripts/setup.sh) runs the queries."""
    path = tmp_path / "queries.json"
    path.write_text(json.dumps(queries))
    result = subprocess.run(
        ["node", str(JS_CLIENT / "run_queries.mjs"), str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "PATH": "/usr/bin:/bin",
            "CLICKHOUSE_URL": endpoint_url,
            "CLICKHOUSE_USER": "grafana",
            "CLICKHOUSE_PASSWORD": key,
        },
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_javascript_client_reads_and_is_refused_like_a_clickhouse_server(endpoint, tmp_path):
    url = f"http://127.0.0.1:{endpoint.port}"
    result = run_js(
        url,
        endpoint.analyst,
        [
            {"name": "places", "sql": "SELECT * FROM places"},
            {"name": "drop", "sql": "DROP TABLE places"},
            {"name": "file", "sql": "SELECT * FROM file('/etc/passwd', 'LineAsString')"},
        ],
        tmp_path,
    )
    assert result["ping"] is True
    places, drop, file = result["queries"]
    assert places.get("rows", 0) > 0 and places["query_id"], places
    assert "readonly" in drop["error"] and drop["code"] == "164"
    assert "file()" in file["error"] and file["code"] == "497"
    [refused] = run_js(url, endpoint.counter_staff, [{"name": "x", "sql": "SELECT 1"}], tmp_path)["queries"]
    assert refused["code"] == "497"


@pytest.mark.parametrize("mode", ["embedded", "server"])
def test_export_points_grafana_at_the_workers_endpoint_or_at_the_server(tmp_path, mode):
    config = write_config(
        tmp_path,
        "127.0.0.1:9092",
        clickhouse={
            "mode": mode,
            "http_port": 9123,
            "http_host": "0.0.0.0",
            "host": "ch.example",
            "port": 8443,
            "secure": True,
            "username": "hub",
        },
    )
    cli(config, "dashboards", "export", "--provisioning", str(tmp_path / "provisioning"))
    [source] = yaml.safe_load((tmp_path / "provisioning" / "datasources" / "clickhouse.yaml").read_text())[
        "datasources"
    ]
    expected = (
        ({"host": "127.0.0.1", "port": 9123, "secure": False, "username": "grafana"}, "${MALLSTREAM_GRAFANA_KEY}")
        if mode == "embedded"
        else (
            {"host": "ch.example", "port": 8443, "secure": True, "username": "hub"},
            "${MALLSTREAM_CLICKHOUSE_PASSWORD}",
        )
    )
    assert {name: source["jsonData"][name] for name in expected[0]} == expected[0]
    assert source["jsonData"]["protocol"] == "http" and source["jsonData"]["defaultDatabase"] == "mallstream"
    assert source["secureJsonData"] == {"password": expected[1]}


def test_export_without_an_endpoint_to_point_at_says_which_setting(tmp_path):
    config = write_config(tmp_path, "127.0.0.1:9092", clickhouse={"http_port": None})
    result = cli(config, "dashboards", "export", "--provisioning", str(tmp_path / "provisioning"), check=False)
    assert result.returncode == 2 and "clickhouse.http_port" in result.stderr and "Traceback" not in result.stderr
