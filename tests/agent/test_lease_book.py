"""The lease's decision logic on a fake clock (``LeaseBook``): who keeps a primary writable,
when it must be fenced, and why a renewal can extend a lease but never revive one."""

from __future__ import annotations

from activities.agent_lease import LeaseBook
from activities.agent_server import Observation, ServerState

LEASE = 1.5
PRIMARY = Observation(ServerState.PRIMARY, 100)
STANDBY = Observation(ServerState.STANDBY, 100)
DOWN = Observation(ServerState.DOWN)
FENCED = Observation(ServerState.FENCED)


def armed_at(now: float = 0.0) -> LeaseBook:
    """A book whose node ``a`` was armed by the control worker at ``now`` and seen serving."""
    book = LeaseBook(LEASE)
    assert book.renew("a", now, now, arms=True).accepted
    assert book.check({"a": PRIMARY}, now) == []
    return book


def test_a_primary_nobody_renewed_is_never_fenced() -> None:
    """Unarmed (never renewed by the control worker), a primary is not under protection."""
    book = LeaseBook(LEASE)
    assert book.check({"a": PRIMARY}, 0.0) == []
    assert book.check({"a": PRIMARY}, 100.0) == []
    assert not book.renew("a", 100.0, 100.0, arms=False).accepted  # a reply does not arm


def test_an_armed_primary_is_fenced_once_lease_s_passed_without_renewal() -> None:
    """Exactly LEASE_S after the last renewal the lease still holds; just after, it is gone."""
    book = armed_at(0.0)
    assert book.check({"a": PRIMARY}, LEASE) == []
    assert book.check({"a": PRIMARY}, LEASE + 0.01) == ["a"]
    assert book.check({"a": PRIMARY}, LEASE + 0.1) == ["a"]  # until the fence shows


def test_control_renewals_keep_the_lease() -> None:
    """Renewals every 0.25 s keep the lease for as long as they come."""
    book = armed_at(0.0)
    now = 0.0
    while now < 10.0:
        now += 0.25
        assert book.renew("a", now, now, arms=True).accepted
        assert book.check({"a": PRIMARY}, now + 0.05) == []
    assert book.remaining("a", now) == LEASE


def test_standby_replies_alone_keep_an_armed_lease() -> None:
    """Once armed, a standby replying every second keeps the lease without the control
    worker; when the replies stop (the standby was promoted), the lease runs out."""
    book = armed_at(0.0)
    for second in range(1, 10):
        assert book.renew("a", float(second), second + 0.2, arms=False).accepted
        assert book.check({"a": PRIMARY}, second + 0.3) == []
    assert book.check({"a": PRIMARY}, 9.0 + LEASE + 0.01) == ["a"]


def test_a_renewal_after_expiry_is_refused() -> None:
    """A thawed agent reads a renewal that waited through the freeze before it checks:
    the lease expired meanwhile, so the renewal is refused and the check fences."""
    book = armed_at(0.0)
    late = book.renew("a", 3.0, 3.0, arms=True)
    assert not late.accepted and "expired" in late.reason
    assert book.check({"a": PRIMARY}, 3.0) == ["a"]
    assert not book.renew("a", 3.1, 3.1, arms=True).accepted


def test_a_late_standby_reply_cannot_revive_the_lease() -> None:
    """A reply the frozen primary took in only after the thaw carries a fresh reply_time,
    yet arrives after the lease expired: refused."""
    book = armed_at(0.0)
    assert not book.renew("a", 2.9, 3.0, arms=False).accepted
    assert book.check({"a": PRIMARY}, 3.0) == ["a"]


def test_evidence_is_dated_by_when_it_was_observed() -> None:
    """A renewal based on an older probe buys time from the probe, not from its arrival;
    evidence from a clock ahead of ours buys nothing extra; older evidence shortens nothing."""
    book = armed_at(0.0)
    assert book.renew("a", 0.5, 1.0, arms=True).accepted
    assert book.remaining("a", 1.0) == LEASE - 0.5
    assert book.renew("a", 9.0, 1.0, arms=True).accepted  # from the future
    assert book.remaining("a", 1.0) == LEASE
    assert book.renew("a", 0.2, 1.1, arms=True).accepted  # older than what we had
    assert book.remaining("a", 1.1) == LEASE - 0.1


def test_a_standby_promoted_in_place_gets_a_fresh_lease() -> None:
    """A node armed long ago, now a standby, is promoted (same postmaster): its lease runs
    from the moment the agent sees it serve, so the control worker has time to renew it."""
    book = armed_at(0.0)
    assert book.check({"a": STANDBY}, 1.0) == []
    assert book.check({"a": PRIMARY}, 50.0) == []
    assert book.check({"a": PRIMARY}, 50.0 + LEASE) == []
    assert book.check({"a": PRIMARY}, 50.0 + LEASE + 0.01) == ["a"]


def test_a_primary_started_behind_the_agents_back_gets_no_grace() -> None:
    """An armed former primary started by hand (a new postmaster, not a promotion) is fenced
    at once: its lease ran out while it was down."""
    book = armed_at(0.0)
    assert book.check({"a": DOWN}, 1.0) == []
    assert book.check({"a": Observation(ServerState.PRIMARY, 200)}, 50.0) == ["a"]


def test_the_agents_own_start_holds_the_check_then_grants_a_fresh_lease() -> None:
    """While the agent starts the server itself nothing is checked (a crash recovery can take
    longer than a lease); afterwards the lease is fresh and the earlier loss forgotten."""
    book = armed_at(0.0)
    assert book.check({"a": PRIMARY}, 2.0) == ["a"]
    book.hold("a")
    assert book.check({"a": FENCED}, 2.1) == []
    assert book.check({"a": Observation(ServerState.PRIMARY, 300)}, 9.0) == []
    book.grant("a", 10.0)
    assert book.renew("a", 10.5, 10.5, arms=True).accepted
    assert book.check({"a": Observation(ServerState.PRIMARY, 300)}, 11.0) == []
    assert book.check({"a": Observation(ServerState.PRIMARY, 300)}, 12.01) == ["a"]


def test_a_fenced_server_refuses_renewals_and_a_restored_lease_runs_from_restore() -> None:
    """Renewals of a fenced server are refused; a lease found armed on disk after an agent
    restart starts fresh; a disarmed node is left alone."""
    book = armed_at(0.0)
    book.check({"a": FENCED}, 0.5)
    assert not book.renew("a", 0.6, 0.6, arms=True).accepted
    restored = LeaseBook(LEASE)
    restored.restore("b", 100.0)
    assert restored.check({"b": PRIMARY}, 100.0 + LEASE) == []
    assert restored.check({"b": PRIMARY}, 100.0 + LEASE + 0.01) == ["b"]
    restored.disarm("b")
    assert restored.check({"b": PRIMARY}, 200.0) == []
