"""Every output table of a hub as comparable rows: ids and figures, without wall-clock or bookkeeping columns.

Run as ``python -m tests.outputs CONFIG`` (a process of its own: an embedded chdb directory is
opened once per process) it prints the tables as JSON; :func:`outputs` does that and reads it.

Most tables are compared row by row. A few hold rows whose number or split depends on timing
or order that no crash should matter to, and are compared as what they add up to:

* ledger_entries: a member's receipts come through several partitions, in an order the input
  does not fix: the running balance and which receipt enrolled the member are left out;

* footfall_rollups: a sale that reaches its interval after it closed is a late row of its own,
  so the figures are summed per interval and area, beside the ids of the rows that were on time;
* parking_occupancy, and the raw device tables: the count at each gate event follows the order
  gate events of several partitions arrive in, and a replay gives each event an id of its own:
  the rest is compared (the crash test checks counts against the truth where the order is settled);
* vip_visits: a visit is amended by each receipt that joins it: its last version is compared;
* customer_snapshots: the table keeps each member's latest snapshot (intermediate ones follow the
  order of receipts); "as of" follows the clock of the replay, and so do P(alive) and the value
  class (cut-offs recomputed on a timer): what the latest says of the member's purchases is compared.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mallstream.settings import load
from mallstream.sinks.warehouse import open_warehouse

#: What the sink adds to every row (where it came from, which insert), and fields stamped with the wall clock.
NOT_COMPARED = {"_topic", "_partition", "_offset", "_batch", "_sunk_at", "decided_at", "published_at"}
#: Device events as replayed: the replay gives each an id of its own, so their content is compared.
RAW_TABLES = ("rfid_reads", "footfall_ticks", "parking_events")
#: The tables the agents and sinks write; a query where rows are not compared one by one (see above).
TABLES: dict[str, str | None] = {
    "ledger_entries": """
        SELECT if(cause = 'enrolled', toString(tuple(member_id, cause, reason)),
                  toString(tuple(entry_id, mall_id, member_id, account, delta, cause, txn_id, store_id, ts,
                                 business_day, rule_id, rule_version, amount, voucher_id, reason, by)))
        FROM {db}.ledger_entries""",
    "footfall_rollups": """
        SELECT mall_id, level, key, start, interval_s, sum(visitors_in), sum(visitors_out), sum(staff_in),
               sum(staff_out), sum(transactions), sum(passers_by), arraySort(groupArrayIf(row_id, NOT late))
        FROM {db}.footfall_rollups GROUP BY mall_id, level, key, start, interval_s""",
    "area_occupancy": None,
    "area_days": None,
    "parking_stays": None,
    "parking_occupancy": "SELECT mall_id, car_park_id, ts, capacity FROM {db}.parking_occupancy",
    "vip_visits": """
        SELECT visit_id, argMax(tuple(mall_id, member_id, tier, visit_number, arrived, left, path_places, path_arrived,
                                      path_dwell_s, zone_dwell_s, reads, spend_cents, txn_ids), version)
        FROM {db}.vip_visits GROUP BY visit_id""",
    "alerts": None,
    "customer_snapshots": """
        SELECT member_id, argMax(tuple(mall_id, first_purchase, last_purchase, repeat_days, receipts, spend_cents,
                                       top_brands, top_categories, price_band_cents, weekday_visits, hour_visits,
                                       alert, tier), as_of)
        FROM {db}.customer_snapshots GROUP BY member_id""",
    "receipts_by_member": None,
    **{table: None for table in RAW_TABLES},
}


def _dump(config: Path) -> dict[str, list[str]]:
    warehouse = open_warehouse(load(config).clickhouse)
    try:
        dumped = {}
        for table, query in TABLES.items():
            if query is None:
                _, described = warehouse.query(f"DESCRIBE TABLE {{db}}.{table}")
                columns = ", ".join(row[0] for row in described[table in RAW_TABLES :] if row[0] not in NOT_COMPARED)
                query = f"SELECT {columns} FROM {{db}}.{table}"
            _, rows = warehouse.query(f"SELECT toString(tuple(*)) FROM ({query})")
            dumped[table] = sorted(row[0] for row in rows)
        return dumped
    finally:
        warehouse.close()


def outputs(config: Path) -> dict[str, list[str]]:
    """The hub's output tables, each as its rows (as text), sorted."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.outputs", str(config)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=300,
    )
    return json.loads(result.stdout)


if __name__ == "__main__":
    print(json.dumps(_dump(Path(sys.argv[1]))))
