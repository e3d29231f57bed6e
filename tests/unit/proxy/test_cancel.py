"""Cancel keys routed by (backend pid, proxy secret) and the per-address limit on failed cancels."""

from __future__ import annotations

from tenantctl.proxy.cancel import BackendTarget, CancelKeys, CancelLimiter
from tenantctl.routing.document import NO_TLS

C1 = BackendTarget("c1", "10.1.0.1", 5432, NO_TLS)
C2 = BackendTarget("c2", "10.2.0.1", 5432, NO_TLS)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_colliding_pids_of_two_clusters_get_distinct_secrets_and_route_to_their_own_cluster() -> None:
    draws = iter([b"aaaa", b"aaaa", b"aaaa", b"bbbb"])
    keys = CancelKeys(random=lambda n: next(draws))
    assert keys.register(C1, 4242, b"back1") == (4242, b"aaaa")
    assert keys.register(C2, 4242, b"back2") == (4242, b"bbbb")  # two clashing draws skipped
    one, two = keys.lookup(4242, b"aaaa", "10.0.0.1"), keys.lookup(4242, b"bbbb", "10.0.0.1")
    assert one is not None and (one.target, one.backend_secret) == (C1, b"back1")
    assert two is not None and (two.target, two.backend_secret) == (C2, b"back2")
    keys.unregister(4242, b"aaaa")
    assert keys.lookup(4242, b"aaaa", "10.0.0.1") is None
    assert keys.lookup(4242, b"bbbb", "10.0.0.1") is not None
    keys.unregister(4242, b"bbbb")
    assert len(keys) == 0


def test_guessed_keys_do_nothing_and_the_backends_own_secret_is_not_a_key() -> None:
    keys = CancelKeys()
    pid, secret = keys.register(C1, 4242, b"back")
    assert secret != b"back" or keys.register(C1, 4242, b"back")[1] != b"back"
    for guess in ((4242, b"back"), (4243, secret), (4242, b"\x00\x00\x00\x00"), (4242, secret + b"x")):
        assert keys.lookup(*guess, "10.0.0.1") is None
    assert keys.lookup(pid, secret, "10.0.0.1") is not None


def test_failed_cancels_are_limited_per_source_address() -> None:
    clock = Clock()
    keys = CancelKeys(limiter=CancelLimiter(max_failures=3, window=60.0, clock=clock))
    pid, secret = keys.register(C1, 4242, b"back")
    for guess in range(3):
        assert keys.lookup(pid, guess.to_bytes(4, "big"), "10.0.0.66") is None
    # Over the limit: even the right key is not looked up for this address...
    assert keys.lookup(pid, secret, "10.0.0.66") is None
    # ...while other addresses are unaffected, and the address recovers after the window.
    assert keys.lookup(pid, secret, "10.0.0.1") is not None
    clock.now += 60.0
    assert keys.lookup(pid, secret, "10.0.0.66") is not None


def test_successful_cancels_do_not_count_and_the_table_of_sources_is_bounded() -> None:
    clock = Clock()
    limiter = CancelLimiter(max_failures=2, window=60.0, max_sources=3, clock=clock)
    keys = CancelKeys(limiter=limiter)
    pid, secret = keys.register(C1, 1, b"back")
    for _ in range(10):
        assert keys.lookup(pid, secret, "10.0.0.1") is not None
    for source in ("a", "b", "c", "d", "e"):
        limiter.failed(source)
    assert len(limiter._failures) == 3
