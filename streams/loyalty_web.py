"""HTTP for tills and the service desk: authorisations and manual operations, answered by the card's worker.

Parameters travel in the query string (faust forwards a request to the worker owning
the member without its body): a till may call any worker.

    POST /authorise/?member_id=&txn_id=&amount_cents=[&hold_id=][&voucher_id=]
    POST /operations/?member_id=&op_id=&action=adjust|rebate|status&by=&why=[&points=][&strategy_id=][&status=]
                     [&mall_id=]   (the desk's mall; by default the mall of the member's latest receipt)
    POST /schedule/?at=2026-12-31T00:00:00+08:00[&by=][&why=]     (scheduled operations at an explicit moment)

Operations and schedule runs are recorded in the audit log (``audit`` topic, ClickHouse ``audit_log``) with
who (``by``), the API key that sent them, what, when and why.

Answers are JSON. A request the card's worker did not answer within
``rules.answer_timeout_s`` is 504; asking again with the same hold or operation id is safe.
"""

from __future__ import annotations

import datetime as dt
import uuid

import aiohttp
import msgspec
from faust.web import Request, Response, View

from .access import principal_of
from .app import Hub
from .core.accounts import MemberCard
from .records import AuditRecord, HoldRequest, ManualOperation
from .topics import partition_of

#: How many of the latest effects the member view lists.
RECENT_ENTRIES = 20


def member_view(card: MemberCard, now: dt.datetime) -> dict:
    """Member 360: balances per account, vouchers with scope and validity, tier, status and the latest entries."""
    recent = [effect for memory in list(card.txns.values())[-RECENT_ENTRIES:] for effect in memory.effects]
    return {
        "member_id": card.member_id,
        "tier": card.tier,
        "status": card.status,
        "birthday": card.birthday.isoformat() if card.birthday else None,
        "balances": {"points": card.points, "stored_value_cents": card.stored_value},
        "vouchers": [
            {
                "voucher_id": voucher.voucher_id,
                "campaign_id": voucher.campaign_id,
                "amount_cents": voucher.amount,
                "remaining_cents": voucher.remaining,
                "scope": msgspec.to_builtins(voucher.scope),
                "valid_from": voucher.valid_from.isoformat(),
                "valid_to": voucher.valid_to.isoformat(),
                "usable_now": voucher.usable_at(now) and voucher.remaining > 0,
            }
            for voucher in card.vouchers.values()
        ],
        "holds": [msgspec.to_builtins(hold) for hold in card.holds.values()],
        "receipts": len(card.txns),
        "recent_entries": msgspec.to_builtins(recent[-RECENT_ENTRIES:]),
    }


def _request(kind: type[HoldRequest] | type[ManualOperation], request: Request, **fields: object):
    """The query string as a request record, validated as if it came off the topic."""
    values = {**request.query, "request_id": uuid.uuid4().hex, **fields}
    return msgspec.convert(values, kind, strict=False)


#: Set on a request one worker sends on to another: the second answers it, whatever it holds.
FORWARDED = "X-Mallstream-Forwarded"


async def answered_elsewhere(hub: Hub, view: View, request: Request, member_id: str) -> Response | None:
    """The answer of the worker holding the member's card, when that is another worker; else None.

    The members lane's group tells every worker who holds which partition (streams/state/owners.py).
    A worker holding no partition yet (starting, or in a rebalance) answers itself: its request goes
    through the member's partition and waits for the answer, as faust's table routes did.
    """
    partition = partition_of(member_id.encode(), hub.loyalty.partitions)
    owner = hub.member_lane.owner_of(partition)
    if owner is None or partition in hub.member_lane.held or request.headers.get(FORWARDED):
        return None
    headers = {name: value for name, value in request.headers.items() if name.lower() not in ("host", "content-length")}
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            request.method,
            owner.rstrip("/") + request.path_qs,
            headers={**headers, FORWARDED: "1"},
            data=await request.read(),
            timeout=aiohttp.ClientTimeout(total=hub.settings.rules.answer_timeout_s + 5),
        ) as reply,
    ):
        return view.bytes(await reply.read(), content_type=reply.content_type, status=reply.status)


def register_loyalty_views(hub: Hub) -> None:
    app = hub.app

    async def ask(
        view: View, kind: type[HoldRequest] | type[ManualOperation], request: Request, **fields: object
    ) -> Response:
        try:
            message = _request(kind, request, **fields)
        except msgspec.ValidationError as exc:
            return view.json({"error": str(exc)}, status=400)
        elsewhere = await answered_elsewhere(hub, view, request, message.member_id)
        if elsewhere is not None:
            return elsewhere
        try:
            return view.json(await hub.loyalty.ask(message))
        except TimeoutError:
            return view.json(
                {"error": "the card's worker did not answer in time; ask again with the same id"}, status=504
            )

    @app.page("/authorise/")
    class Authorise(View):
        async def post(self, request: Request) -> Response:
            """Place a hold on stored value or a voucher for a receipt the till has not posted yet."""
            hold_id = request.query.get("hold_id") or request.query.get("txn_id", "")
            return await ask(self, HoldRequest, request, hold_id=hold_id)

    @app.page("/operations/")
    class Operations(View):
        async def post(self, request: Request) -> Response:
            """A service-desk operation (points adjustment, manual rebate, card status), once per op_id.

            ``by`` is who the desk says did it; ``actor``, the key that sent it, is recorded beside it in the audit.
            """
            return await ask(
                self, ManualOperation, request, ts=dt.datetime.now(dt.UTC).isoformat(), actor=principal_of(request).name
            )

    @app.page("/schedule/")
    class Schedule(View):
        async def post(self, request: Request) -> Response:
            try:
                at = dt.datetime.fromisoformat(request.query["at"])
            except (KeyError, ValueError):
                return self.json(
                    {"error": "at must be a time with a UTC offset, e.g. 2026-12-31T00:00:00+08:00"}, status=400
                )
            if at.tzinfo is None:
                return self.json({"error": "at needs a UTC offset"}, status=400)
            partitions = await hub.loyalty.run_schedule(at)
            principal = principal_of(request)
            await hub.audit(
                AuditRecord(
                    audit_id=f"schedule:{uuid.uuid4().hex}",
                    kind="schedule_run",
                    ts=dt.datetime.now(dt.UTC),
                    who=request.query.get("by") or principal.name,
                    actor=principal.name,
                    what=f"scheduled operations run as of {at.isoformat()} on {partitions} partitions",
                    why=request.query.get("why", ""),
                    outcome="sent",
                )
            )
            return self.json({"at": at.isoformat(), "partitions": partitions})
