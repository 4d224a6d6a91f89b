"""Member master data: the card system's CSV export, and the simulated VIPs' version of it."""

from __future__ import annotations

import pytest

from mallstream.settings import ConfigError, load
from mallstream.simulators.mallday import epc_of, member_id_of, plates_of
from mallstream.streams.core.vip import Member
from mallstream.streams.master_data import load_master_data, write_master_data
from tests.conftest import EXAMPLE_CONFIG, cli


def test_simulated_vips_master_data_maps_each_card_to_its_member(tmp_path):
    out = tmp_path / "members.csv"
    result = cli(EXAMPLE_CONFIG, "simulate", "members", "--out", str(out))
    assert "wrote 5,000 members" in result.stdout
    data = load_master_data(out)
    assert len(data.by_id) == 5000
    member = data.member_of_tag(epc_of(42).lower())  # readers may report the EPC in either case
    assert member is not None and member.member_id == member_id_of(42)
    assert data.member_of_plate(plates_of(43)[0]) == member_id_of(43) and not plates_of(42)
    assert 0.6 < len({data.by_plate[plate] for plate in data.by_plate}) / 5000 < 0.7  # two in three have a car
    assert member.tier in {"vip", "platinum"} and 1 <= len(member.top_brands) <= 3
    assert set(load(EXAMPLE_CONFIG).vip.tiers) >= {m.tier for m in data.by_id.values()}


@pytest.mark.parametrize(
    ("rows", "where", "problem"),
    [
        ("member_id,name\nM1,Ann\n", "line 1", "missing column(s) tier"),
        ("member_id,tier,epc\nM1,vip,E280\nM1,vip,E281\n", "line 3: member_id", "appears twice"),
        ("member_id,tier,epc\nM1,vip,XYZ!\n", "line 2: epc", "not a hex EPC"),
        ("member_id,tier,epc\nM1,vip,E280\nM2,vip,e280\n", "line 3: epc", "already issued to M1"),
        ("member_id,tier\nM1,\n", "line 2", "must not be empty"),
        (
            "member_id,tier,plates\nM1,vip,沪A12345\nM2,vip,沪B1;沪a-12345\n",
            "line 3: plates",
            "沪A12345 is already registered to M1",
        ),
    ],
)
def test_a_bad_export_names_the_file_the_line_and_the_problem(tmp_path, rows, where, problem):
    path = tmp_path / "members.csv"
    path.write_text(rows)
    with pytest.raises(ConfigError) as caught:
        load_master_data(path)
    assert caught.value.file == str(path) and caught.value.key == where and problem in caught.value.problem


def test_plates_link_cars_to_members_however_the_camera_writes_them(tmp_path):
    path = tmp_path / "members.csv"
    write_master_data(
        path,
        [
            (Member("M1", "vip"), "E2801160", ("沪A·D00042", "沪AF00042")),
            (Member("M2", "vip"), ""),
            (Member("M3", "vip"), "", ()),
        ],
    )
    assert path.read_text(encoding="utf-8").splitlines()[1].endswith(",沪A·D00042;沪AF00042")
    data = load_master_data(path)
    assert data.by_plate == {"沪AD00042": "M1", "沪AF00042": "M1"}
    assert [data.member_of_plate(p) for p in ("沪ad-00042", "沪A F00042", "沪A12345")] == ["M1", "M1", None]
    path.write_text("member_id,tier\nM1,vip\n")  # exports without the column link no cars
    assert load_master_data(path).by_plate == {}
