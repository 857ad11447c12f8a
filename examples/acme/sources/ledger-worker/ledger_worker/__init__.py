"""Ledger worker: consumes payment movements and reconciles them nightly."""
