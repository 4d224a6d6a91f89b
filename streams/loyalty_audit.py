"""Audit records of the loyalty desk and the rule file: who did what, when and why, once per cause.

Built here from what the loyalty agent decided; sent on the ``audit`` topic by the agent and
stored in ClickHouse ``audit_log``.
"""

from __future__ import annotations

import datetime as dt
import json
import pwd
from pathlib import Path

from .core.rules import RuleBook, RuleFile
from .records import AuditRecord, LedgerEntry, ManualOperation


def _describe(operation: ManualOperation) -> str:
    if operation.action == "adjust":
        return f"adjust points by {operation.points:+d}"
    if operation.action == "rebate":
        return f"manual rebate of {operation.points} points by {operation.strategy_id}"
    return f"card status to {operation.status}"


def operation_audit(operation: ManualOperation, answer: dict, entries: list[LedgerEntry], mall_id: str) -> AuditRecord:
    """The audit record of a desk operation: once per op_id, however often it is asked again."""
    outcome = (
        "rejected: " + "; ".join(answer["rejected"])
        if answer["rejected"]
        else "replayed"
        if answer["replayed"]
        else "applied"
    )
    moved = [{"account": entry.account, "delta": entry.delta, "cause": entry.cause} for entry in entries]
    return AuditRecord(
        audit_id=f"operation:{operation.op_id}",
        kind="manual_operation",
        ts=operation.ts,
        who=operation.by,
        actor=operation.actor,
        what=_describe(operation),
        why=operation.why,
        outcome=outcome,
        mall_id=mall_id,
        member_id=operation.member_id,
        subject=operation.op_id,
        detail=json.dumps(moved),
    )


def _owner(path: Path) -> str:
    """Who owns the file: the best a file system says about who changed it."""
    try:
        uid = path.stat().st_uid
    except OSError:
        return "unknown"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def rules_audit(
    rules: RuleFile, book: RuleBook, previous: str | None, actor: str, refused: bool = False
) -> AuditRecord:
    """A rule file's content coming into force (``previous``: the version it replaces), or an edit refused.

    ``actor``: the worker that saw it (its group instance id).
    """
    try:
        changed = dt.datetime.fromtimestamp(rules.path.stat().st_mtime, dt.UTC)
    except OSError:
        changed = dt.datetime.now(dt.UTC)
    if refused:
        return AuditRecord(
            audit_id=f"rules-refused:{rules.refused_digest}",
            kind="rules_refused",
            ts=changed,
            who=_owner(rules.path),
            actor=actor,
            what=f"edit of {rules.path} refused; version {book.tag} stays in force",
            outcome=f"refused: {rules.error}",
            subject=str(rules.path),
            detail=rules.refused_digest or "",
        )
    change = book.change
    return AuditRecord(
        audit_id=f"rules:{book.version.digest}",
        kind="rules_changed",
        ts=changed,
        who=change.by if change else _owner(rules.path),
        actor=actor,
        what=f"rules {rules.path} version {book.tag} in force" + (f", replacing {previous}" if previous else ""),
        why=change.why if change else "",
        outcome="applied",
        subject=str(rules.path),
        detail=book.version.digest,
    )
