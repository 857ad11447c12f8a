"""Nightly reconciliation of the ledger against the card processor."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Mismatch:
    capture_id: str
    ledger_minor: int
    processor_minor: int


def reconcile(ledger: dict[str, int], processor: dict[str, int]) -> list[Mismatch]:
    """Compare captured amounts per capture id.

    A capture missing on either side counts as a mismatch with amount 0 on
    that side. Mismatches under 100 minor units are booked automatically to
    the rounding account; larger ones go to #ledger-alerts for a human.
    """
    out = []
    for capture_id in sorted(set(ledger) | set(processor)):
        a = ledger.get(capture_id, 0)
        b = processor.get(capture_id, 0)
        if a != b:
            out.append(Mismatch(capture_id, a, b))
    return out
