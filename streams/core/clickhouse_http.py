"""The ClickHouse HTTP interface, read-only, as the worker answers it over the embedded engine.

What a request asks (query, format, database, ``param_*``, settings in the URL) becomes one
statement for the engine with a ``SETTINGS`` clause of its own: the allowed settings the client
sent, the hub's bounds on time and result size, and ``readonly = 1`` last, so the engine refuses
writes, setting changes and the table functions that read files or reach the network, exactly
as a ClickHouse server does for a ``readonly=1`` user. What ``readonly`` lets through but a
read-only analyst must not have (``INTO OUTFILE``, the scalar ``file()``) is refused from the
query as the engine itself formats it.

The engine writes every output format itself; only Native needs more for clients that ask for
``client_protocol_version`` (clickhouse-go, so Grafana's data source, and clickhouse-connect):
there a server writes each block with its BlockInfo and, from revision 54454, a "no custom
serialization" byte after each column's type, which chdb (revision 0) never writes. Those
bytes are put in between the engine's, found by walking the columns' sizes.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import lz4.block
import lz4.frame
from backports import zstd


class ClickHouseError(Exception):
    """A refusal as ClickHouse words it: ``Code: N. DB::Exception: ... (NAME)``, with its HTTP status."""

    def __init__(self, code: int, name: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.name, self.message, self.status = code, name, message, status

    @property
    def text(self) -> str:
        return f"Code: {self.code}. DB::Exception: {self.message}. ({self.name})\n"


#: HTTP statuses ClickHouse gives its exception codes (the rest are 500).
_STATUS_OF_CODE = {
    **dict.fromkeys((164, 497), 403),  # READONLY, ACCESS_DENIED
    **dict.fromkeys((60, 81), 404),  # UNKNOWN_TABLE, UNKNOWN_DATABASE
    **dict.fromkeys(
        (6, 25, 26, 27, 36, 38, 41, 42, 43, 44, 46, 47, 53, 62, 69, 70, 72, 113, 115, 130, 190, 456, 457, 479), 400
    ),  # parsing, unknown identifiers/functions/settings, bad arguments and types
    516: 401,
}
_ENGINE_ERROR = re.compile(
    r"Code: (?P<code>\d+)\. DB::Exception: (?P<message>.*?)\s*(?:\((?P<name>[A-Z_]+)\))?\s*\Z", re.S
)


def engine_error(message: str) -> ClickHouseError:
    """The engine's exception (chdb raises ``RuntimeError("Code: N. DB::Exception: ...")``) as the server answers it."""
    text = message[message.find("Code: ") :] if "Code: " in message else message
    found = _ENGINE_ERROR.match(text.strip())
    if not found:
        return ClickHouseError(1000, "POCO_EXCEPTION", text.strip(), 500)
    code = int(found["code"])
    return ClickHouseError(
        code, found["name"] or "UNKNOWN_EXCEPTION", found["message"].rstrip("."), _STATUS_OF_CODE.get(code, 500)
    )


# -- the request ------------------------------------------------------------------------------------------------

#: URL parameters that steer the HTTP exchange, never settings of the query (clients send them freely).
TRANSPORT = frozenset(
    {
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
        "add_http_cors_header",
        "http_zlib_compression_level",
        "http_wait_end_of_query",
        "http_response_buffer_size",
    }
)
#: Settings a client may give in the URL: how the result is written and limited, never what the query may do.
ALLOWED_SETTING = re.compile(
    r"output_format_\w+|date_time_output_format|session_timezone|max_execution_time|"
    r"max_result_rows|max_result_bytes|result_overflow_mode|limit|offset|max_block_size|"
    r"extremes|join_use_nulls|readonly|timeout_overflow_mode|"
    r"cast_string_to_dynamic_use_inference|date_time_input_format"
)
#: Each a bound of the hub's that a client may lower, never lift (0 would mean no bound at all).
BOUNDED = ("max_execution_time", "max_result_rows", "max_result_bytes")
SETTING_VALUE = re.compile(r"[\w.:/+\- ]*")
FORMAT_NAME = re.compile(r"[A-Za-z]\w*")
DATABASE_NAME = re.compile(r"[\w.-]+")


@dataclass(frozen=True)
class Limits:
    """The hub's bounds on every query of the endpoint: ``clickhouse.http_max_*``."""

    max_execution_time: float
    max_result_rows: int
    max_result_bytes: int


@dataclass
class Request:
    """One query as a client asked it over HTTP."""

    sql: str
    default_format: str = "TabSeparated"
    database: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    query_id: str | None = None
    #: the client's ``client_protocol_version`` (0: none), for Native
    revision: int = 0
    #: compress the answer as ``Accept-Encoding`` asks (``enable_http_compression=1``)
    http_compression: bool = False


def parse_request(url: Mapping[str, str], body: str, limits: Limits) -> Request:
    """The request's query and what steers it; raises :class:`ClickHouseError` for a setting it may not give."""
    sql = "\n".join(part for part in (url.get("query", ""), body) if part)
    if not sql.strip():
        raise ClickHouseError(62, "SYNTAX_ERROR", "Empty query")
    settings: dict[str, str] = {}
    for name, value in url.items():
        if name in TRANSPORT or name.startswith("param_"):
            continue
        if not ALLOWED_SETTING.fullmatch(name):
            raise ClickHouseError(
                164,
                "READONLY",
                f"Cannot modify '{name}' setting in readonly mode: this endpoint "
                "takes only output_format_*, session_timezone and result and time limits",
                403,
            )
        if not SETTING_VALUE.fullmatch(value):
            raise ClickHouseError(72, "CANNOT_PARSE_NUMBER", f"Bad value for setting '{name}'")
        settings[name] = value
    if settings.get("readonly", "1") != "1":
        raise ClickHouseError(164, "READONLY", "Cannot modify 'readonly' setting in readonly mode", 403)
    settings.pop("readonly", None)
    for name in BOUNDED:
        bound = getattr(limits, name)
        if name not in settings:
            settings[name] = str(bound)
            continue
        try:
            asked = float(settings[name])
        except ValueError:
            raise ClickHouseError(72, "CANNOT_PARSE_NUMBER", f"Bad value for setting '{name}'") from None
        if not 0 < asked <= bound:
            raise ClickHouseError(
                164,
                "READONLY",
                f"Setting {name} should be greater than 0 and not greater than "
                f"{bound} on this endpoint (clickhouse.http_{name.removeprefix('max_')})",
                403,
            )
    fmt = url.get("default_format", "TabSeparated")
    database = url.get("database") or None
    if not FORMAT_NAME.fullmatch(fmt):
        raise ClickHouseError(73, "UNKNOWN_FORMAT", f"Unknown format {fmt}")
    if database is not None and not DATABASE_NAME.fullmatch(database):
        raise ClickHouseError(81, "UNKNOWN_DATABASE", f"Database {database} does not exist", 404)
    try:
        revision = int(url.get("client_protocol_version", "0"))
    except ValueError:
        raise ClickHouseError(72, "CANNOT_PARSE_NUMBER", "Bad client_protocol_version") from None
    return Request(
        sql=sql,
        default_format=fmt,
        database=database,
        query_id=url.get("query_id") or None,
        params={name[6:]: value for name, value in url.items() if name.startswith("param_")},
        settings=settings,
        revision=revision,
        http_compression=url.get("enable_http_compression") == "1",
    )


def statement(sql: str, settings: Mapping[str, str]) -> str:
    """The query with the request's settings and ``readonly = 1`` last, in a clause on a line of its own."""
    clause = [f"{name} = '{value}'" for name, value in settings.items()] + ["readonly = 1"]
    return sql.rstrip().rstrip(";").rstrip() + "\nSETTINGS " + ", ".join(clause)


# -- what readonly lets through -----------------------------------------------------------------------------------

#: Functions that read files, run programs or reach the network: most are table functions that ``readonly``
#: already refuses; ``file`` is also a scalar function that it does not.
REFUSED_FUNCTIONS = frozenset(
    {
        "file",
        "filecluster",
        "url",
        "urlcluster",
        "s3",
        "s3cluster",
        "gcs",
        "oss",
        "cosn",
        "azureblobstorage",
        "azureblobstoragecluster",
        "hdfs",
        "hdfscluster",
        "remote",
        "remotesecure",
        "cluster",
        "clusterallreplicas",
        "mysql",
        "postgresql",
        "mongodb",
        "redis",
        "sqlite",
        "odbc",
        "jdbc",
        "input",
        "executable",
        "iceberg",
        "icebergs3",
        "icebergazure",
        "iceberghdfs",
        "iceberglocal",
        "deltalake",
        "deltalakelocal",
        "hudi",
        "arrowflight",
        "catboostevaluate",
    }
)
_STRING_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'")
_CALL = re.compile(r"`?(\w+)`?\s*\(")
_TRAILING_FORMAT = re.compile(r"\nFORMAT (\w+)(?:\nSETTINGS [^\n]*)?\Z")
_RESULT_SET = re.compile(r"(?:WITH|SELECT|SHOW|DESCRIBE|DESC|EXISTS|EXPLAIN|CHECK|\()\b", re.I)


def refusal_of(formatted: str) -> ClickHouseError | None:
    """Why a query the engine formatted (``formatQuery``) may not run, beyond what ``readonly`` refuses."""
    code = _STRING_LITERAL.sub("''", formatted)
    if "INTO OUTFILE" in code:
        return ClickHouseError(
            497,
            "ACCESS_DENIED",
            "Not enough privileges: INTO OUTFILE writes a file on the hub, which readonly mode does not allow",
            403,
        )
    for name in _CALL.findall(code):
        if name.lower() in REFUSED_FUNCTIONS:
            return ClickHouseError(
                497,
                "ACCESS_DENIED",
                f"Not enough privileges: {name}() reads outside the hub's tables, which readonly mode does not allow",
                403,
            )
    return None


def output_format(formatted: str, default: str) -> str:
    """The format the answer is in: the query's own ``FORMAT`` clause, else the request's default."""
    found = _TRAILING_FORMAT.search(formatted)
    return found[1] if found else default


def has_result_set(formatted: str) -> bool:
    """Whether the statement answers with rows (its format is then named in ``X-ClickHouse-Format``)."""
    return bool(_RESULT_SET.match(formatted.lstrip()))


# -- Native for clients of a protocol revision --------------------------------------------------------------------

#: A block's BlockInfo as a server writes it: is_overflows = false, bucket_num = -1, end.
BLOCK_INFO = b"\x01\x00\x02\xff\xff\xff\xff\x00"
#: From this client revision on, each column's type is followed by its serialization kinds (0: none custom).
REVISION_WITH_CUSTOM_SERIALIZATION = 54454

_FIXED_WIDTH = {
    **dict.fromkeys(("UInt8", "Int8", "Bool", "Enum8", "Nothing"), 1),
    **dict.fromkeys(("UInt16", "Int16", "Date", "Enum16", "BFloat16"), 2),
    **dict.fromkeys(("UInt32", "Int32", "Float32", "Date32", "DateTime", "IPv4", "Decimal32", "Time"), 4),
    **dict.fromkeys(("UInt64", "Int64", "Float64", "DateTime64", "Decimal64", "Time64"), 8),
    **dict.fromkeys(("UInt128", "Int128", "UUID", "IPv6", "Decimal128"), 16),
    **dict.fromkeys(("UInt256", "Int256", "Decimal256"), 32),
}
_GEO = {
    "Point": "Tuple(Float64, Float64)",
    "Ring": "Array(Point)",
    "LineString": "Array(Point)",
    "Polygon": "Array(Ring)",
    "MultiLineString": "Array(LineString)",
    "MultiPolygon": "Array(Polygon)",
}
_NAMED_ELEMENT = re.compile(r"`?\w+`?\s+(\S.*)", re.S)
_LC_HAS_ADDITIONAL_KEYS = 1 << 9
_LC_INDEX_WIDTH = (1, 2, 4, 8)


class NotFramable(ClickHouseError):
    def __init__(self, type_name: str) -> None:
        super().__init__(
            48,
            "NOT_IMPLEMENTED",
            f"Columns of type {type_name} cannot be sent as Native to a client of "
            "a protocol revision (client_protocol_version) by this endpoint: use another format",
            501,
        )


def split_type(type_name: str) -> tuple[str, list[str]]:
    """``Map(String, Array(UInt8))`` -> ``("Map", ["String", "Array(UInt8)"])``; quotes and nesting respected."""
    open_at = type_name.find("(")
    if open_at < 0:
        return type_name.strip(), []
    args, depth, start, quote = [], 0, open_at + 1, None
    for index in range(open_at + 1, len(type_name) - 1):
        char = type_name[index]
        if quote:
            if char == "\\":
                continue
            if char == quote and type_name[index - 1] != "\\":
                quote = None
        elif char in "'`\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            args.append(type_name[start:index].strip())
            start = index + 1
    args.append(type_name[start:-1].strip())
    return type_name[:open_at].strip(), args


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def varint(self) -> int:
        shift = value = 0
        while True:
            byte = self.data[self.at]
            self.at += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def skip(self, count: int) -> None:
        self.at += count
        if self.at > len(self.data):
            raise IndexError("Native data ends inside a column")

    def uint64(self) -> int:
        value: int
        (value,) = struct.unpack_from("<Q", self.data, self.at)
        self.at += 8
        return value

    def string(self) -> str:
        size = self.varint()
        self.at += size
        return self.data[self.at - size : self.at].decode()


def _skip_column(reader: _Reader, type_name: str, rows: int) -> None:
    """Move past ``rows`` values of a column written in bulk by the Native format."""
    name, args = split_type(type_name)
    if name in _GEO:
        return _skip_column(reader, _GEO[name], rows)
    if name in _FIXED_WIDTH or name.startswith("Interval"):
        return reader.skip(_FIXED_WIDTH.get(name, 8) * rows)
    if name == "Decimal":
        precision = int(args[0])
        return reader.skip((4 if precision <= 9 else 8 if precision <= 18 else 16 if precision <= 38 else 32) * rows)
    if name == "FixedString":
        return reader.skip(int(args[0]) * rows)
    if name == "String":
        for _ in range(rows):
            reader.skip(reader.varint())
        return None
    if name == "Nullable":
        reader.skip(rows)
        return _skip_column(reader, args[0], rows)
    if name == "SimpleAggregateFunction":
        return _skip_column(reader, args[-1], rows)
    if name in ("Array", "Map"):
        if rows == 0:
            return None
        reader.skip(8 * (rows - 1))
        elements = reader.uint64()
        for element in args if name == "Map" else args[:1]:
            _skip_column(reader, element, elements)
        return None
    if name == "Tuple":
        for element in args:
            named = _NAMED_ELEMENT.fullmatch(element)  # Tuple(a UInt8, b String): the element's name, then its type
            _skip_column(reader, named[1] if named else element, rows)
        return None
    if name == "LowCardinality":
        return _skip_low_cardinality(reader, args[0], rows)
    raise NotFramable(type_name)


def _skip_low_cardinality(reader: _Reader, type_name: str, rows: int) -> None:
    """Its state prefix (the keys' version), then granules: index type, new keys, index count and indexes."""
    keys_type = split_type(type_name)[1][0] if type_name.startswith("Nullable(") else type_name
    reader.uint64()
    done = 0
    while done < rows:
        index_type = reader.uint64()
        if index_type & _LC_HAS_ADDITIONAL_KEYS:
            _skip_column(reader, keys_type, reader.uint64())
        count = reader.uint64()
        reader.skip(_LC_INDEX_WIDTH[index_type & 0xFF] * count)
        done += count


def native_for_revision(data: bytes, revision: int) -> bytes:
    """The engine's Native output (revision 0) as a server writes it for a client of ``revision``."""
    if revision <= 0:
        return data
    custom = revision >= REVISION_WITH_CUSTOM_SERIALIZATION
    reader, out = _Reader(data), bytearray()
    try:
        while reader.at < len(data):
            out += BLOCK_INFO
            start = reader.at
            columns, rows = reader.varint(), reader.varint()
            out += data[start : reader.at]
            for _ in range(columns):
                start = reader.at
                reader.string()
                type_name = reader.string()
                out += data[start : reader.at] + (b"\x00" if custom else b"")
                start = reader.at
                if rows:
                    _skip_column(reader, type_name, rows)
                out += data[start : reader.at]
    except (IndexError, struct.error, ValueError) as exc:
        raise ClickHouseError(1000, "POCO_EXCEPTION", f"Native output could not be framed: {exc}", 500) from None
    return bytes(out)


# -- compression --------------------------------------------------------------------------------------------------


def lz4_frames(data: bytes) -> bytes:
    """Every lz4 frame of a body, one after the other (clients compress each block as a frame of its own)."""
    out = []
    while data:
        frame = lz4.frame.LZ4FrameDecompressor()
        out.append(frame.decompress(data))
        data = frame.unused_data
    return b"".join(out)


#: Content-Encoding -> how to decode a request body and encode an answer
CODECS: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    "gzip": (gzip.decompress, lambda data: gzip.compress(data, compresslevel=3)),
    "deflate": (zlib.decompress, lambda data: zlib.compress(data, 3)),
    "zstd": (zstd.decompress, zstd.compress),
    "lz4": (lz4_frames, lz4.frame.compress),
}
#: ClickHouse's own compressed blocks (``decompress=1``): checksum, method, sizes, data
_NATIVE_BLOCK = struct.Struct("<16sBII")
_NATIVE_METHODS: dict[int, Callable[[bytes, int], bytes]] = {
    0x02: lambda data, size: data,
    0x82: lambda data, size: lz4.block.decompress(data, uncompressed_size=size),
    0x90: lambda data, size: zstd.decompress(data),
}


def decode_body(body: bytes, content_encoding: str, native_compressed: bool) -> bytes:
    """A request body as sent: HTTP ``Content-Encoding``, then ClickHouse's compressed blocks if ``decompress=1``."""
    encoding = content_encoding.strip().lower()
    if encoding not in ("", "identity"):
        if encoding not in CODECS:
            raise ClickHouseError(
                1,
                "UNSUPPORTED_METHOD",
                f"Unknown Content-Encoding {encoding}: this endpoint takes {', '.join(CODECS)}",
                415,
            )
        body = CODECS[encoding][0](body)
    if not native_compressed:
        return body
    out, at = [], 0
    while at < len(body):
        _, method, compressed, size = _NATIVE_BLOCK.unpack_from(body, at)
        data = body[at + _NATIVE_BLOCK.size : at + 16 + compressed]
        if method not in _NATIVE_METHODS:
            raise ClickHouseError(271, "CANNOT_DECOMPRESS", f"Unknown compression method {method:#x}")
        out.append(_NATIVE_METHODS[method](data, size))
        at += 16 + compressed
    return b"".join(out)


def answer_encoding(accept_encoding: str) -> str | None:
    """The first of the client's ``Accept-Encoding`` this endpoint can write (None: send it as it is)."""
    for item in accept_encoding.split(","):
        name = item.split(";")[0].strip().lower()
        if name in CODECS:
            return name
    return None
