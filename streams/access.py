"""Who may call what on the worker's HTTP port: every request passes here before its view.

    GET  /member/<id>/                 member: call_centre, supervisor, admin;
                                       member_by_card: a kiosk, only with ?card=<EPC> of that member's card
    POST /sql/                         sql: analyst, admin (read-only queries)
    GET  /stats/                       stats: analyst, supervisor, admin
    POST /authorise/                   authorise: till, admin
    POST /operations/, /schedule/      operate, schedule: supervisor, admin
    GET  /board/, /board/...           board: counter_staff (their zones), supervisor, admin
    POST /alerts/<id>/ack              ack: counter_staff (their zones), supervisor, admin
    anything else                      admin (faust's own pages: /router/, /table/<name>/<key>/...)

Refusals are 401 (no or a wrong key; with a basic-auth challenge, so a browser asks for the key)
or 403 (the role does not allow it), counted in ``/stats/`` as ``auth_refused_401``/``_403`` and
logged without the key. A body over ``worker.max_body_kb`` is 413 before it is read. Roles and
keys: :mod:`mallstream.auth`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from mallstream.auth import CHALLENGE, Gatekeeper, KeyStore, Principal, Refused

if TYPE_CHECKING:
    from .app import Hub

log = logging.getLogger(__name__)

#: (methods, path, permissions any one of which admits the request)
ROUTES: tuple[tuple[frozenset[str], re.Pattern[str], tuple[str, ...]], ...] = tuple(
    (frozenset(methods), re.compile(pattern), permissions)
    for methods, pattern, permissions in (
        (("GET",), r"/member/(?P<member_id>[^/]+)/", ("member", "member_by_card")),
        (("POST",), r"/sql/", ("sql",)),
        (("GET",), r"/stats/", ("stats",)),
        (("POST",), r"/authorise/", ("authorise",)),
        (("POST",), r"/operations/", ("operate",)),
        (("POST",), r"/schedule/", ("schedule",)),
        (("GET", "HEAD"), r"/board/(places|events|static/.+)?", ("board",)),
        (("POST",), r"/alerts/[^/]+/ack", ("ack",)),
    )
)
ADMIN_ONLY = ("admin",)


def required(method: str, path: str) -> tuple[tuple[str, ...], re.Match[str] | None]:
    """The permissions a request needs, and the match of its route (None: not one of the hub's routes)."""
    for methods, pattern, permissions in ROUTES:
        match = pattern.fullmatch(path)
        if match and method in methods:
            return permissions, match
    return ADMIN_ONLY, None


def refusal(refused: Refused) -> web.Response:
    return web.json_response(
        {"error": refused.reason}, status=refused.status, headers=CHALLENGE if refused.status == 401 else None
    )


def principal_of(request: web.Request) -> Principal:
    """Who made the request, as the middleware admitted it."""
    return request["principal"]


def access_middleware(gate: Gatekeeper, card_holder: Callable[[str], str | None], max_body: int):
    """An aiohttp middleware admitting each request by its route's permissions (see the module's table)."""

    @web.middleware
    async def admit(request: web.Request, handler):
        permissions, match = required(request.method, request.path)

        def own_card_only(principal: Principal) -> None:
            if match is None or "member_by_card" not in permissions or principal.may("member"):
                return
            card = request.query.get("card", "")
            if not card or card_holder(card) != match["member_id"]:
                raise Refused(403, "a kiosk reads only the member whose card it is shown: add ?card=<the card's EPC>")

        try:
            request["principal"] = gate.admit(request.headers, permissions, own_card_only)
        except Refused as refused:
            log.warning("refused %s %s from %s: %s", request.method, request.path, request.remote, refused.reason)
            return refusal(refused)
        if (request.content_length or 0) > max_body:
            return web.json_response({"error": f"request body over {max_body} bytes"}, status=413)
        return await handler(request)

    return admit


def register_access(hub: Hub) -> KeyStore:
    """Put the gate in front of every view of the worker; the local key is made here (see mallstream.auth)."""
    conf = hub.settings
    keys = KeyStore.of(conf)
    if conf.auth.local_key:
        keys.ensure_local_key()
    gate = Gatekeeper(keys, conf.auth, hub.counters)

    def card_holder(card: str) -> str | None:
        member = hub.master.member_of_tag(card)
        return member.member_id if member else None

    hub.app.web.web_app.middlewares.append(access_middleware(gate, card_holder, conf.worker.max_body_kb * 1024))
    return keys
