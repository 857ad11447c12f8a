from ledger_worker.reconcile import reconcile


def test_missing_capture_is_a_mismatch():
    got = reconcile({"c1": 100}, {})
    assert [(m.capture_id, m.ledger_minor, m.processor_minor) for m in got] == [("c1", 100, 0)]
