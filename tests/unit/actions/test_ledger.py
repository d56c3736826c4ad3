from worker.actions import ledger
from worker.actions.ledger import LedgerEntry

RECORD = {"idempotency_key": "k", "kind": "log"}


def test_a_claimed_key_is_pending_with_the_record_and_no_attempt():
    entry = ledger.claimed(RECORD, partition=3, now=10.0)
    assert entry == LedgerEntry("pending", 0, 3, RECORD, None, None, 10.0)
    assert not entry.finished


def test_attempts_are_counted_before_they_are_made_and_clear_the_due_time():
    entry = ledger.retry_scheduled(ledger.claimed(RECORD, 0, 1.0), "HTTP 500", 5.0, 2.0)
    assert entry.next_at == 5.0
    started = ledger.attempt_started(entry, 5.0)
    assert (started.attempts, started.next_at, started.error) == (1, None, "HTTP 500")


def test_done_and_failed_entries_drop_the_record_and_are_finished():
    pending = ledger.attempt_started(ledger.claimed(RECORD, 2, 1.0), 1.0)
    done = ledger.completed(pending, 2.0)
    failed = ledger.dead_lettered(pending, "HTTP 400", 2.0)
    assert done == LedgerEntry("done", 1, 2, None, None, None, 2.0)
    assert failed == LedgerEntry("failed", 1, 2, None, None, "HTTP 400", 2.0)
    assert done.finished and failed.finished


def test_entries_round_trip_through_table_values():
    entry = ledger.retry_scheduled(ledger.claimed(RECORD, 1, 1.0), "boom", 9.5, 2.0)
    assert LedgerEntry.from_dict(entry.to_dict()) == entry
