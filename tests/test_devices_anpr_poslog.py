"""Gate cameras and POSLog: safe XML, plates suppressed within a window, exact receipts."""

import datetime as dt
import json
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mallstream.devices.anpr import Gate, PlateState, anpr_xml_part, decode_hikvision, decode_plate_recognizer
from mallstream.devices.normalise import SequenceGap
from mallstream.devices.poslog import PosLogState, TransactionKey, decode_poslog
from mallstream.streams.records import ParkingEvent, PosLine, PosTransaction, Tender

EXIT_GATE = Gate("P1-exit-1", "P1", "exit")
RECEIVED = dt.datetime(2026, 7, 5, 19, 44, 41, tzinfo=dt.UTC)
NAMESPACES = ["", ' xmlns="http://www.isapi.org/ver20/XMLSchema"', ' xmlns="http://www.hikvision.com/ver20/XMLSchema"']


def hikvision(
    plate: str = "WX1234A", when: str = "2026-07-05T20:44:40+01:00", namespace: str = "", event: str = "ANPR"
) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><EventNotificationAlert version="2.0"{namespace}>'
        f"<dateTime>{when}</dateTime><eventType>{event}</eventType>"
        f"<ANPR><licensePlate>{plate}</licensePlate><direction>reverse</direction><confidenceLevel>92</confidenceLevel>"
        "<vehicleListName>otherList</vehicleListName></ANPR></EventNotificationAlert>"
    ).encode()


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_the_doc_hikvision_alert_becomes_a_parking_event_at_the_configured_gate(namespace):
    _, decoded = decode_hikvision(PlateState(), hikvision(namespace=namespace), RECEIVED, EXIT_GATE)
    assert decoded.events == [
        ParkingEvent(
            gate_id="P1-exit-1",
            car_park_id="P1",
            plate="WX1234A",
            direction="exit",
            ts=dt.datetime(2026, 7, 5, 19, 44, 40, tzinfo=dt.UTC),
        )
    ]
    assert decoded.rejects == []


def multipart(xml: bytes, name: str = "anpr.xml") -> tuple[bytes, str]:
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\r\n--boundary-ish\r\n\xff\xd9"
    body = (
        b'--MIME_boundary\r\nContent-Disposition: form-data; name="'
        + name.encode()
        + b'"; filename="'
        + name.encode()
        + b'"\r\nContent-Type: text/xml\r\nContent-Length: '
        + str(len(xml)).encode()
        + b"\r\n\r\n"
        + xml
        + b'\r\n--MIME_boundary\r\nContent-Disposition: form-data; name="licensePlatePicture.jpg"; filename="licensePlatePicture.jpg"'
        b"\r\nContent-Type: image/jpeg\r\n\r\n" + jpeg + b"\r\n--MIME_boundary--\r\n"
    )
    return body, "multipart/form-data; boundary=MIME_boundary"


def test_the_anpr_xml_part_is_taken_from_a_multipart_push_and_pictures_are_ignored():
    body, content_type = multipart(hikvision())
    assert anpr_xml_part(body, content_type) == hikvision()
    _, decoded = decode_hikvision(PlateState(), body, RECEIVED, EXIT_GATE, content_type)
    assert [event.plate for event in decoded.events] == ["WX1234A"]
    other_name, _ = multipart(hikvision(), name="event.xml")
    assert anpr_xml_part(other_name, content_type) == hikvision()  # the first XML part when none is named anpr.xml
    assert anpr_xml_part(hikvision(), "application/xml") is None
    _, decoded = decode_hikvision(PlateState(), b"--MIME_boundary--\r\n", RECEIVED, EXIT_GATE, content_type)
    assert "anpr.xml" in decoded.rejects[0].reason


def test_a_plate_read_again_within_the_window_at_the_same_gate_is_suppressed():
    state, plates = PlateState(), []
    for second, gate in [
        (40, EXIT_GATE),
        (45, EXIT_GATE),
        (54, EXIT_GATE),
        (58, Gate("P1-in-1", "P1", "entry")),
        (65, EXIT_GATE),
    ]:
        state, decoded = decode_hikvision(
            state,
            hikvision(
                when=f"2026-07-05T20:44:{second:02}+01:00"
                if second < 60
                else f"2026-07-05T20:45:{second - 60:02}+01:00"
            ),
            RECEIVED,
            gate,
        )
        plates += [(event.gate_id, event.ts.second) for event in decoded.events]
    # 45 and 54 repeat within 10 s of the previous read; 65 is 11 s after 54
    assert plates == [("P1-exit-1", 40), ("P1-in-1", 58), ("P1-exit-1", 5)]


def test_old_reads_are_forgotten_so_the_state_stays_small():
    state = PlateState()
    for n in range(50):
        state, _ = decode_hikvision(
            state, hikvision(plate=f"CAR{n}", when=f"2026-07-05T20:{n:02}:00+01:00"), RECEIVED, EXIT_GATE
        )
    assert len(state.last_read) == 1


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (hikvision(plate="unknown"), "without a plate"),
        (hikvision(when="2026-07-05T20:44:40"), "no UTC offset"),
        (hikvision(when="soon"), "dateTime"),
        (b"<EventNotificationAlert><eventType>ANPR</eventType>", "not well-formed"),
    ],
)
def test_unusable_hikvision_alerts_are_rejected_with_a_reason(payload, reason):
    state, decoded = decode_hikvision(PlateState(), payload, RECEIVED, EXIT_GATE)
    assert decoded.events == [] and reason in decoded.rejects[0].reason and decoded.rejects[0].raw == payload
    assert state == PlateState()


def test_other_hikvision_events_are_not_parking_events():
    _, decoded = decode_hikvision(PlateState(), hikvision(event="videoloss"), RECEIVED, EXIT_GATE)
    assert decoded.events == [] and decoded.rejects == []


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<EventNotificationAlert><dateTime>2026-07-05T20:44:40+01:00</dateTime><eventType>ANPR</eventType>
<ANPR><licensePlate>&lol4;</licensePlate></ANPR></EventNotificationAlert>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<POSLog><Transaction><RetailStoreID>&secret;</RetailStoreID></Transaction></POSLog>"""


@pytest.mark.parametrize("attack", [BILLION_LAUGHS, EXTERNAL_ENTITY])
def test_entity_expansion_and_external_entities_are_refused_by_both_xml_drivers(attack):
    _, decoded = decode_hikvision(PlateState(), attack, RECEIVED, EXIT_GATE)
    assert decoded.events == [] and "Entit" in decoded.rejects[0].reason
    _, decoded, _ = decode_poslog(PosLogState(), attack, dt.UTC)
    assert decoded.events == [] and "Entit" in decoded.rejects[0].reason


def plate_recognizer(camera: str = "gate-in-1", timestamp: str = "2026-07-05T19:44:20.123Z", results=None) -> bytes:
    results = (
        results
        if results is not None
        else [
            {"plate": "wx1234a", "score": 0.91, "region": {"code": "gb"}, "direction": 90},
            {"plate": "wx1z34a", "score": 0.42, "region": {"code": "gb"}, "direction": 90},
        ]
    )
    return json.dumps(
        {
            "hook": {"id": 1, "event": "recognition"},
            "data": {"camera_id": camera, "timestamp": timestamp, "results": results},
        }
    ).encode()


GATES = {"gate-in-1": Gate("P1-in-1", "P1", "entry")}


def test_the_doc_plate_recognizer_webhook_gives_the_best_plate_upper_cased_with_the_camera_drift():
    _, decoded = decode_plate_recognizer(PlateState(), plate_recognizer(), RECEIVED, GATES)
    assert decoded.events == [
        ParkingEvent(
            gate_id="P1-in-1",
            car_park_id="P1",
            plate="WX1234A",
            direction="entry",
            ts=dt.datetime(2026, 7, 5, 19, 44, 20, 123000, tzinfo=dt.UTC),
            clock_skew_s=-20.877,
        )
    ]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (plate_recognizer(camera="car-wash"), "not a configured gate"),
        (plate_recognizer(results=[]), "without a plate"),
        (plate_recognizer(timestamp="2026-07-05 19:44:20"), "no UTC offset"),
        (plate_recognizer(results=[{"plate": "X" * 200, "score": 0.9}]), "invalid parking event"),
        (b'{"data": {"camera_id": 7}}', "not a Plate Recognizer webhook"),
    ],
)
def test_unusable_plate_recognizer_webhooks_are_rejected_with_a_reason(payload, reason):
    _, decoded = decode_plate_recognizer(PlateState(), payload, RECEIVED, GATES)
    assert decoded.events == [] and reason in decoded.rejects[0].reason


# --- POSLog ---------------------------------------------------------------------------------------

IXRETAIL = (
    'xmlns="http://www.nrf-arts.org/IXRetail/namespace/" xmlns:acs="http://www.ncr.com/rsd/acs/tlog/markup/poslog/2.1"'
)
NEW_YORK = ZoneInfo("America/New_York")


def transaction(
    seq: int,
    body: str,
    store: str = "9",
    workstation: str = "34",
    day: str = "2017-09-30",
    end: str = "2017-10-01T02:02:54",
    extra: str = "",
) -> str:
    return (
        f"<Transaction{extra}><RetailStoreID>{store}</RetailStoreID><WorkstationID>{workstation}</WorkstationID>"
        f"<SequenceNumber>{seq}</SequenceNumber><BusinessDayDate>{day}</BusinessDayDate><EndDateTime>{end}</EndDateTime>"
        f"{body}</Transaction>"
    )


SIGN_ON = "<ControlTransaction><ReasonCode>Valid SignOn</ReasonCode></ControlTransaction>"
DOC_SALE = """<RetailTransaction><LineItem><Sale><ItemID>00000000067591</ItemID><RegularSalesUnitPrice>2.99</RegularSalesUnitPrice>
<ExtendedAmount>1.26</ExtendedAmount><Quantity>0.42</Quantity></Sale></LineItem>
<LineItem><Tender TenderType="CreditDebit"><Amount>1.07</Amount></Tender></LineItem>
<LineItem><acs:LoyaltyMembership><acs:LoyaltyID>0000000000000040000066677</acs:LoyaltyID></acs:LoyaltyMembership></LineItem>
<Total TotalType="TransactionGrandAmount">1.07</Total></RetailTransaction>"""


def poslog(*transactions: str) -> bytes:
    return f"<POSLog {IXRETAIL}>{''.join(transactions)}</POSLog>".encode()


def test_the_doc_poslog_sale_becomes_a_receipt_and_the_sign_on_is_skipped():
    state, decoded, gaps = decode_poslog(
        PosLogState(), poslog(transaction(160, SIGN_ON), transaction(161, DOC_SALE)), NEW_YORK
    )
    assert decoded.rejects == [] and gaps == []
    assert decoded.events == [
        PosTransaction(
            txn_id="9:34:2017-09-30:161",
            store_id="9",
            workstation_id="34",
            seq=161,
            ts=dt.datetime(2017, 10, 1, 6, 2, 54, tzinfo=dt.UTC),  # 02:02:54 EDT, after midnight of business day 30 Sep
            business_day=dt.date(2017, 9, 30),
            kind="sale",
            total=Decimal("1.07"),
            # the transaction-level 0.19 reward is spread over the lines so they add up to the total
            lines=[
                PosLine(sku="00000000067591", qty=Decimal("0.42"), unit_price=Decimal("2.99"), amount=Decimal("1.07"))
            ],
            tenders=[Tender(type="CreditDebit", amount=Decimal("1.07"))],
            member_id="0000000000000040000066677",
        )
    ]
    assert state.last_seq == {("9", "34"): 161}


def test_a_bare_transaction_without_namespaces_is_read_too():
    _, decoded, _ = decode_poslog(PosLogState(), transaction(161, DOC_SALE.replace("acs:", "")).encode(), NEW_YORK)
    assert [(txn.txn_id, txn.member_id) for txn in decoded.events] == [
        ("9:34:2017-09-30:161", "0000000000000040000066677")
    ]


def retail(
    lines: list[tuple[str, str, str, str]],
    tenders: list[tuple[str, str]],
    total: str,
    link: str = "",
    line_element: str = "Sale",
) -> str:
    items = "".join(
        f"<LineItem><{line_element}><ItemID>{sku}</ItemID><RegularSalesUnitPrice>{price}</RegularSalesUnitPrice>"
        f"<ExtendedAmount>{amount}</ExtendedAmount><Quantity>{qty}</Quantity></{line_element}></LineItem>"
        for sku, price, amount, qty in lines
    )
    pays = "".join(
        f'<LineItem><Tender TenderType="{kind}"><Amount>{amount}</Amount></Tender></LineItem>'
        for kind, amount in tenders
    )
    return f'<RetailTransaction>{items}{pays}{link}<Total TotalType="TransactionGrandAmount">{total}</Total></RetailTransaction>'


LINK_TO_161 = (
    '<TransactionLink ReasonCode="{reason}"><RetailStoreID>9</RetailStoreID><WorkstationID>34</WorkstationID>'
    "<SequenceNumber>161</SequenceNumber><BusinessDayDate>2017-09-30</BusinessDayDate></TransactionLink>"
)


def test_negative_returns_and_post_voids_become_positive_with_the_original_sale():
    returned = retail(
        [("A1", "10.00", "-20.00", "2")], [("Cash", "-20.00")], "-20.00", LINK_TO_161.format(reason="Return")
    )
    voided = retail(
        [("A1", "10.00", "-30.00", "3")], [("CreditDebit", "-30.00")], "-30.00", LINK_TO_161.format(reason="PostVoid")
    )
    _, decoded, _ = decode_poslog(PosLogState(), poslog(transaction(170, returned), transaction(171, voided)), NEW_YORK)
    assert decoded.rejects == []
    assert [
        (t.kind, t.total, t.lines[0].amount, t.lines[0].qty, t.tenders[0].amount, t.original_txn_id)
        for t in decoded.events
    ] == [
        ("return", Decimal("20.00"), Decimal("20.00"), Decimal("2"), Decimal("20.00"), "9:34:2017-09-30:161"),
        ("void", Decimal("30.00"), Decimal("30.00"), Decimal("3"), Decimal("30.00"), "9:34:2017-09-30:161"),
    ]


def test_an_exchange_keeps_the_returned_line_negative_inside_a_sale():
    exchange = retail([("B2", "15.00", "15.00", "1")], [("Cash", "5.00")], "5.00")
    exchange = exchange.replace(
        "<LineItem>",
        "<LineItem><Return><ItemID>A1</ItemID><RegularSalesUnitPrice>10.00</RegularSalesUnitPrice>"
        "<ExtendedAmount>10.00</ExtendedAmount><Quantity>1</Quantity></Return></LineItem><LineItem>",
        1,
    )
    _, decoded, _ = decode_poslog(PosLogState(), poslog(transaction(5, exchange)), NEW_YORK)
    [txn] = decoded.events
    assert txn.kind == "sale" and [line.amount for line in txn.lines] == [Decimal("-10.00"), Decimal("15.00")]


def test_cash_change_voided_lines_and_cancelled_baskets():
    body = retail([("A1", "3.50", "7.00", "2"), ("A2", "1.00", "1.00", "1")], [], "7.00")
    body = body.replace("<LineItem><Sale><ItemID>A2", '<LineItem VoidFlag="true"><Sale><ItemID>A2')
    body = body.replace(
        "<Total",
        '<LineItem><Tender TenderType="Cash"><Amount>10.00</Amount>'
        "<TenderChange><Amount>3.00</Amount></TenderChange></Tender></LineItem><Total",
    )
    cancelled = transaction(8, retail([("A1", "3.50", "3.50", "1")], [], "3.50"), extra=' CancelFlag="true"')
    _, decoded, _ = decode_poslog(PosLogState(), poslog(transaction(7, body), cancelled), NEW_YORK)
    [txn] = decoded.events
    assert [line.sku for line in txn.lines] == ["A1"] and txn.tenders == [Tender(type="Cash", amount=Decimal("7.00"))]


def test_sequence_gaps_are_reported_per_workstation_across_documents():
    state, _, gaps = decode_poslog(
        PosLogState(), poslog(transaction(1, SIGN_ON), transaction(1, SIGN_ON, workstation="35")), NEW_YORK
    )
    state, _, gaps = decode_poslog(
        state,
        poslog(transaction(2, SIGN_ON), transaction(5, SIGN_ON), transaction(4, SIGN_ON, workstation="35")),
        NEW_YORK,
    )
    assert gaps == [SequenceGap("poslog:9:34", 3, 4), SequenceGap("poslog:9:35", 2, 3)]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (retail([("A1", "1.00", "1.00", "1")], [("Cash", "0.50")], "1.00"), "sum of tenders"),
        (retail([("A1", "1.00", "1.00", "0")], [], "1.00"), "qty must be a positive"),
        (retail([("A1", "1.00", "1.005", "1")], [], "1.005"), "at most 2 decimals"),
        (retail([("A1", "1.00", "-5.00", "1")], [], "-5.00"), "return needs original_txn_id"),
        (retail([("A1", "1.00", "abc", "1")], [], "1.00"), "'abc' is not a number"),
        (retail([("A1", "1.00", "1.00", "1")], [], "NaN"), "not a number"),
        (
            retail([("A1", "1.00", "1.00", "1")], [], "1.00").replace("TransactionGrandAmount", "Net"),
            "no TransactionGrandAmount",
        ),
    ],
)
def test_transactions_failing_validation_are_rejected_with_the_reason_and_the_rest_go_through(body, reason):
    _, decoded, _ = decode_poslog(PosLogState(), poslog(transaction(1, body), transaction(2, DOC_SALE)), NEW_YORK)
    assert [txn.seq for txn in decoded.events] == [2]
    [reject] = decoded.rejects
    assert reason in reject.reason and b"SequenceNumber>1<" in reject.raw  # the transaction, re-serialised


def test_transactions_without_a_usable_key_are_rejected():
    _, decoded, _ = decode_poslog(PosLogState(), poslog(transaction(1, DOC_SALE, day="30/09/2017")), NEW_YORK)
    assert "BusinessDayDate" in decoded.rejects[0].reason or "key" in decoded.rejects[0].reason


def test_txn_ids_are_unique_even_when_ids_contain_the_separator():
    day = dt.date(2026, 1, 1)
    assert TransactionKey("9:1", "2", day, 3).txn_id != TransactionKey("9", "1:2", day, 3).txn_id


@settings(max_examples=200)
@given(st.lists(st.integers(1, 100_000), min_size=1, max_size=6), st.integers(0, 600_000))
def test_transaction_discounts_and_tax_are_spread_so_lines_add_up_to_the_total_to_the_cent(cents, total_cents):
    lines = [(f"S{i}", "1.00", f"{c / 100:.2f}", "1") for i, c in enumerate(cents)]
    total = f"{total_cents / 100:.2f}"
    _, decoded, _ = decode_poslog(
        PosLogState(), poslog(transaction(1, retail(lines, [("Card", total)], total))), NEW_YORK
    )
    [txn] = decoded.events
    assert sum(line.amount for line in txn.lines) == txn.total == Decimal(total)
    for line, original in zip(txn.lines, cents, strict=True):  # in proportion, within a cent
        assert abs(line.amount - Decimal(original) / 100 * txn.total / (Decimal(sum(cents)) / 100)) < Decimal("0.01")


# --- fuzzing: no exception escapes, every reject says why ---------------------------------------

xml_tokens = st.sampled_from(
    [
        "<",
        ">",
        "</",
        "/>",
        "=",
        '"',
        "&",
        "&amp;",
        "&lol;",
        "<!DOCTYPE x [",
        "]>",
        "<!ENTITY lol 'x'>",
        "<?xml version='1.0'?>",
        "POSLog",
        "Transaction",
        "RetailTransaction",
        "LineItem",
        "Sale",
        "Return",
        "Tender",
        "Total",
        "TotalType=",
        "TransactionGrandAmount",
        "RetailStoreID",
        "WorkstationID",
        "SequenceNumber",
        "BusinessDayDate",
        "EndDateTime",
        "ExtendedAmount",
        "Quantity",
        "Amount",
        "TransactionLink",
        "EventNotificationAlert",
        "eventType",
        "ANPR",
        "licensePlate",
        "dateTime",
        "xmlns=",
        "acs:",
        "1",
        "-2.50",
        "2017-09-30",
        "2026-07-05T20:44:40+01:00",
        "NaN",
        " ",
    ]
)
xml_ish = (
    st.lists(xml_tokens | st.text(max_size=5), max_size=60)
    .map("".join)
    .map(lambda text: text.encode("utf-8", "surrogatepass"))
)
poslog_fields = st.sampled_from(
    ["1", "0", "-1.00", "1.005", "2017-09-30", "2017-10-01T02:02:54+08:00", "abc", "", "1e999", "9" * 30]
)


@st.composite
def poslog_like(draw) -> bytes:
    """Structurally plausible POSLog with arbitrary values, to reach the validation paths."""

    def value():
        return draw(poslog_fields | st.text(max_size=8).filter(lambda t: "<" not in t and "&" not in t))

    body = retail(
        [(value(), value(), value(), value())],
        [(value(), value())],
        value(),
        LINK_TO_161.format(reason=draw(st.sampled_from(["Return", "PostVoid", ""]))) if draw(st.booleans()) else "",
        draw(st.sampled_from(["Sale", "Return"])),
    )
    return poslog(transaction(value(), body, store=value(), day=value(), end=value()))


@settings(max_examples=300)
@given(st.binary(max_size=200) | xml_ish | poslog_like())
def test_xml_parsers_turn_any_input_into_records_or_rejects_with_reasons(payload):
    for decoded in (
        decode_hikvision(PlateState(), payload, RECEIVED, EXIT_GATE)[1],
        decode_poslog(PosLogState(), payload, NEW_YORK)[1],
    ):
        assert all(isinstance(event, ParkingEvent | PosTransaction) for event in decoded.events)
        assert all(reject.reason for reject in decoded.rejects)


multipart_fragments = st.sampled_from(
    [
        b"--MIME_boundary",
        b"--MIME_boundary--",
        b"\r\n",
        b"\r\n\r\n",
        b"\n\n",
        b"Content-Type: text/xml",
        b"Content-Type: image/jpeg",
        b'Content-Disposition: form-data; name="anpr.xml"',
        hikvision(),
        BILLION_LAUGHS,
    ]
) | st.binary(max_size=20)


@settings(max_examples=300)
@given(
    st.lists(multipart_fragments, max_size=12).map(b"".join),
    st.text(max_size=60) | st.just("multipart/form-data; boundary=MIME_boundary"),
)
def test_the_multipart_splitter_never_raises(body, content_type):
    part = anpr_xml_part(body, content_type)
    assert part is None or part in body
    _, decoded = decode_hikvision(PlateState(), body, RECEIVED, EXIT_GATE, content_type)
    assert all(reject.reason for reject in decoded.rejects)


json_webhooks = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["gate-in-1", "2026-07-05T19:44:20Z", "wx1234a"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["hook", "data", "camera_id", "timestamp", "results", "plate", "score"]), inner, max_size=5
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.binary(max_size=200) | json_webhooks.map(lambda value: json.dumps(value).encode()))
def test_plate_recognizer_parser_turns_any_input_into_records_or_rejects_with_reasons(payload):
    _, decoded = decode_plate_recognizer(PlateState(), payload, RECEIVED, GATES)
    assert all(isinstance(event, ParkingEvent) for event in decoded.events)
    assert all(reject.reason for reject in decoded.rejects)
