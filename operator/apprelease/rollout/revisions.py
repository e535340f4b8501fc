"""Revision history: numbering, marks (promoted/aborted), pruning. Pure.

Numbers only grow. Returning to an old revision (rollback, git revert) gives it the next
number, as `kubectl rollout undo` does, so "the newest number is what runs" stays true.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from ..api.spec import RevisionTemplate
from ..render.hashing import revision_hash
from .observed import RevisionRecord


class History:
    """The history during one planning pass, remembering which records changed."""

    def __init__(self, records: Iterable[RevisionRecord]):
        self._by_hash: dict[str, RevisionRecord] = {r.hash: r for r in records}
        self._changed: set[str] = set()

    def get(self, hash_: str | None) -> RevisionRecord | None:
        return self._by_hash.get(hash_) if hash_ else None

    @property
    def latest_number(self) -> int:
        return max((r.number for r in self._by_hash.values()), default=0)

    def records(self) -> list[RevisionRecord]:
        return sorted(self._by_hash.values(), key=lambda r: r.number)

    def changed(self) -> list[RevisionRecord]:
        return [self._by_hash[h] for h in sorted(self._changed) if h in self._by_hash]

    def _put(self, record: RevisionRecord) -> RevisionRecord:
        if self._by_hash.get(record.hash) != record:
            self._by_hash[record.hash] = record
            self._changed.add(record.hash)
        return record

    def ensure(self, template: RevisionTemplate, now: str, *, running: set[str]) -> RevisionRecord:
        """The record for ``template``: existing, renumbered if it comes back, or new.

        ``running`` holds hashes currently running (stable/canary); such a revision keeps
        its number (returning to the stable one mid-canary is not a new revision).
        """
        digest = revision_hash(template)
        existing = self._by_hash.get(digest)
        if existing is None:
            return self._put(
                RevisionRecord(
                    number=self.latest_number + 1, hash=digest, template=template, created=now
                )
            )
        if existing.number != self.latest_number and digest not in running:
            return self._put(replace(existing, number=self.latest_number + 1))
        return existing

    def mark_promoted(self, hash_: str, now: str) -> None:
        record = self._by_hash.get(hash_)
        if record and not record.promoted:
            self._put(replace(record, promoted=now, aborted=None, abort_reason=None))

    def mark_aborted(self, hash_: str, now: str, reason: str) -> None:
        record = self._by_hash.get(hash_)
        if record and not record.aborted:
            self._put(replace(record, aborted=now, abort_reason=reason))

    def prune(self, limit: int, keep: set[str]) -> list[RevisionRecord]:
        """Drop the oldest records beyond ``limit`` (never one in ``keep``); return dropped."""
        ordered = sorted(self._by_hash.values(), key=lambda r: r.number, reverse=True)
        kept_count = 0
        dropped = []
        for record in ordered:
            if record.hash in keep:
                continue
            if kept_count < limit:
                kept_count += 1
                continue
            dropped.append(record)
        for record in dropped:
            del self._by_hash[record.hash]
            self._changed.discard(record.hash)
        return dropped


def differs_only_by_restart(a: RevisionTemplate, b: RevisionTemplate) -> bool:
    """A restart request changes nothing the pods run: it rolls, it does not canary."""
    return a.restart_at != b.restart_at and a.model_copy(
        update={"restart_at": None}
    ) == b.model_copy(update={"restart_at": None})
