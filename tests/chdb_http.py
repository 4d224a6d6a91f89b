"""A ClickHouse HTTP endpoint over chdb, so server mode runs against the real engine.

No ClickHouse server can be installed where the tests run, but chdb is the same
engine in-process. This serves the subset of the HTTP interface that an
unmodified clickhouse-connect uses: SQL in the body or the ``query`` parameter,
``param_<name>`` query parameters, any other URL parameter as a setting of that
one query, Native/TSV/... output, ``INSERT ... FORMAT X`` with the data in the
(possibly compressed) body, and ``Code: N. DB::Exception`` errors.

Limits: one chdb session serves every client, so ``session_id`` is ignored and
session state (a client's own ``SET``, temporary tables) is shared by all;
multipart bodies (external data, ``form_encode_query_params``) and
``client_protocol_version`` are not supported (the client falls back to protocol
0); responses are never compressed, which the client accepts.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import socket
import ssl
import tempfile
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from chdb.session import Session

from mallstream.streams.core.clickhouse_http import lz4_frames

#: URL parameters that steer the HTTP layer, never settings of the query.
TRANSPORT = {
    "query",
    "database",
    "default_format",
    "query_id",
    "session_id",
    "session_timeout",
    "session_check",
    "compress",
    "decompress",
    "wait_end_of_query",
    "buffer_size",
    "user",
    "password",
    "quota_key",
    "client_protocol_version",
    "role",
    "enable_http_compression",
    "send_progress_in_http_headers",
    "http_headers_progress_interval_ms",
    "cancel_http_readonly_queries_on_client_close",
}
#: Statements whose answer is a result set, reported with X-ClickHouse-Format even when empty.
RESULT_SET = re.compile(rb"\A\s*(\(\s*)*(SELECT|WITH|SHOW|DESC|DESCRIBE|EXISTS|EXPLAIN|CHECK)\b", re.I)
#: ``INSERT INTO t (cols) FORMAT X`` followed by the data to insert.
INSERT_DATA = re.compile(rb"\A\s*(INSERT\s+INTO\s.*?)\sFORMAT\s+(\w+)[ \t]*\r?\n?(.*)\Z", re.I | re.S)
SETTING_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")


DECOMPRESS = {
    "lz4": lz4_frames,
    "gzip": gzip.decompress,
    "deflate": zlib.decompress,
    "identity": lambda data: data,
}
with suppress(ImportError):
    from backports import zstd  # what clickhouse-connect itself uses for zstd before Python 3.14

    DECOMPRESS["zstd"] = zstd.decompress


class ChdbEngine:
    """One chdb session shared by every request; the lock makes each request's settings its own."""

    def __init__(self, path: Path) -> None:
        self.session = Session(str(path))
        self.lock = threading.Lock()
        self.applied: dict[str, str] = {}
        self.database = "default"
        self.timezone = self.session.query("SELECT timezone()", "TabSeparated").bytes().decode().strip()

    def run(
        self, sql: bytes, fmt: str, settings: dict[str, str], params: dict[str, str], database: str
    ) -> tuple[bytes, dict[str, str]]:
        """Run one statement with these settings and current database; return its output and summary."""
        with self.lock:
            self._apply(settings)
            if database != self.database:
                self.session.query(f"USE `{database}`", "TabSeparated")
                self.database = database
            result = self.session.query(sql.decode(), fmt, params=params)
            summary = {"read_rows": str(result.rows_read()), "read_bytes": str(result.bytes_read())}
            return result.bytes() or b"", summary

    def _apply(self, settings: dict[str, str]) -> None:
        """SET what differs from the previous request, and reset what it set that this one does not."""
        for name in [name for name in self.applied if name not in settings]:
            self.session.query(f"SET {name} = DEFAULT", "TabSeparated")
            del self.applied[name]
        for name, value in settings.items():
            if self.applied.get(name) != value:
                if not SETTING_NAME.match(name):
                    raise ValueError(f"Code: 115. DB::Exception: Unknown setting '{name}'. (UNKNOWN_SETTING)")
                self.applied.pop(name, None)
                quoted = value.replace("\\", "\\\\").replace("'", "\\'")
                self.session.query(f"SET {name} = '{quoted}'", "TabSeparated")
                self.applied[name] = value

    def close(self) -> None:
        with self.lock:
            self.session.close()


class Handler(BaseHTTPRequestHandler):
    """Answers clickhouse-connect's requests the way ClickHouse's HTTP handler would."""

    protocol_version = "HTTP/1.1"  # keep-alive, as urllib3's pool expects
    engine: ChdbEngine
    #: (user, password) every query must carry as basic auth; None: anyone
    login: tuple[str, str] | None = None

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # else ~45 ms per request

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if "query" not in dict(parse_qsl(urlsplit(self.path).query)):
            return self._reply(200, b"Ok.\n", {})  # /ping, and / as a health check
        self._execute(with_body=False)

    def do_POST(self) -> None:
        self._execute(with_body=True)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            body = b"".join(chunks)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "identity").lower()
        if encoding not in DECOMPRESS:
            raise ValueError(f"Code: 1. DB::Exception: Unsupported Content-Encoding {encoding}. (UNSUPPORTED_METHOD)")
        return DECOMPRESS[encoding](body)

    def _execute(self, with_body: bool) -> None:
        if self.login is not None and self.headers.get("Authorization") != _basic(*self.login):
            body = b"Code: 516. DB::Exception: mallstream: Authentication failed: password is incorrect. (AUTHENTICATION_FAILED)\n"
            return self._reply(401, body, {"X-ClickHouse-Exception-Code": "516"})
        url = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        params = {k[6:]: v for k, v in url.items() if k.startswith("param_")}
        settings = {k: v for k, v in url.items() if k not in TRANSPORT and not k.startswith("param_")}
        fmt = url.get("default_format", "TabSeparated")
        headers = {"X-ClickHouse-Query-Id": url.get("query_id", ""), "X-ClickHouse-Timezone": self.engine.timezone}
        try:
            body = self._body() if with_body else b""
            sql = url["query"].encode() + (b"\n" + body if body else b"") if "query" in url else body
            insert = INSERT_DATA.match(sql)
            if insert:
                output, summary = self._insert(insert.group(1), insert.group(2), insert.group(3), settings, url)
                summary["written_rows"] = summary["read_rows"]
            else:
                output, summary = self.engine.run(sql, fmt, settings, params, url.get("database", "default"))
                if RESULT_SET.match(sql):
                    headers["X-ClickHouse-Format"] = fmt
        except Exception as ex:  # chdb raises RuntimeError("Code: N. DB::Exception: ...")
            message = str(ex)
            code = re.search(r"Code: (\d+)", message)
            if not code:
                message = f"Code: 1000. DB::Exception: {message}. (POCO_EXCEPTION)"
            self._reply(
                500, message.encode() + b"\n", {"X-ClickHouse-Exception-Code": code.group(1) if code else "1000"}
            )
            return
        headers["X-ClickHouse-Summary"] = json.dumps(summary)
        self._reply(200, output, headers)

    def _insert(
        self, head: bytes, fmt: bytes, data: bytes, settings: dict[str, str], url: dict[str, str]
    ) -> tuple[bytes, dict[str, str]]:
        """``INSERT ... FORMAT X <data>``: the data goes through a file, as chdb reads it with FROM INFILE."""
        with tempfile.NamedTemporaryFile(suffix=".insert") as file:
            file.write(data)
            file.flush()
            sql = head + b" FROM INFILE '" + file.name.encode() + b"' FORMAT " + fmt
            return self.engine.run(sql, "TabSeparated", settings, {}, url.get("database", "default"))

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@contextmanager
def serve_chdb(
    path: Path, port: int, tls: ssl.SSLContext | None = None, login: tuple[str, str] | None = None
) -> Iterator[None]:
    """Serve the chdb directory ``path`` as ClickHouse HTTP on 127.0.0.1:``port`` while the block runs.

    ``tls``: a server context, for HTTPS; ``login``: the user and password every query must carry.
    """
    engine = ChdbEngine(path)
    handler = type("BoundHandler", (Handler,), {"engine": engine, "login": login})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=f"chdb-http-{port}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        engine.close()


if __name__ == "__main__":
    # python -m tests.chdb_http DIRECTORY PORT: serve until killed, so a test can take the server away
    import sys
    import time

    with serve_chdb(Path(sys.argv[1]), int(sys.argv[2])):
        while True:
            time.sleep(3600)
