import datetime as dt
from decimal import Decimal

import pytest

from mallstream.settings import Mall, Store
from mallstream.streams.core.malls import MallDirectory
from mallstream.streams.core.routing import route_receipt
from mallstream.streams.records import InvalidEvent, PosTransaction

TS = dt.datetime(2026, 11, 21, 12, tzinfo=dt.UTC)
MALLS = MallDirectory([Mall(id="mall-a", stores=[Store(id="S1")]), Mall(id="mall-b")])


def receipt(kind="sale", member=None, original=None, store="S1") -> PosTransaction:
    return PosTransaction(
        txn_id="t2" if original else "t1",
        store_id=store,
        workstation_id="T",
        seq=1,
        ts=TS,
        business_day=TS.date(),
        kind=kind,
        total=Decimal("5"),
        member_id=member,
        original_txn_id=original,
    )


def test_a_sale_with_a_card_travels_under_its_member_and_is_remembered():
    routed = route_receipt(receipt(member="M7"), None, MALLS)
    assert (routed.key, routed.remember_owner, routed.txn.mall_id) == ("M7", "M7", "mall-a")


def test_a_return_without_the_card_goes_to_the_member_of_the_original_sale():
    routed = route_receipt(receipt("return", original="t1"), "M7", MALLS)
    assert routed.key == "M7" and routed.txn.member_id == "M7" and routed.remember_owner is None


def test_receipts_without_any_member_stay_with_their_store():
    assert route_receipt(receipt(), None, MALLS).key == "store:S1"
    assert route_receipt(receipt("return", original="t1"), None, MALLS).key == "store:S1"


def test_a_sale_never_borrows_an_owner():
    assert route_receipt(receipt(), "M7", MALLS).txn.member_id is None


def test_an_unknown_store_without_mall_id_is_refused_when_the_config_has_several_malls():
    with pytest.raises(InvalidEvent, match="store 'ZZZ' is not in the config"):
        route_receipt(receipt(store="ZZZ"), None, MALLS)


def test_with_one_mall_configured_an_unknown_store_is_in_it():
    one = MallDirectory([Mall(id="mall-a", stores=[Store(id="S1")])])
    assert route_receipt(receipt(store="ZZZ"), None, one).txn.mall_id == "mall-a"
