"""What a client library reports through the proxy equals what the backend says (real clients, real servers)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from proxy_it_support import Clusters, ProxyProcess, raw_exchange  # type: ignore[import-not-found]

from tenantctl.proxy import wire

pytestmark = pytest.mark.postgres


def test_the_reported_backend_pid_is_the_real_one(clusters: Clusters, proxy: ProxyProcess) -> None:
    for user in ("alice", "bob"):  # both clusters
        with psycopg.connect(proxy.dsn(user, "app", clusters.tenants[user].password)) as connection:
            row = connection.execute("SELECT pg_backend_pid()").fetchone()
            assert row is not None and connection.info.backend_pid == row[0]


def test_pg_terminate_backend_of_the_reported_pid_ends_that_session(clusters: Clusters, proxy: ProxyProcess) -> None:
    victim = psycopg.connect(proxy.dsn("alice", "app", "alice-pw"), autocommit=True)
    with psycopg.connect(proxy.dsn("alice", "app", "alice-pw"), autocommit=True) as killer:
        row = killer.execute("SELECT pg_terminate_backend(%s)", (victim.info.backend_pid,)).fetchone()
        assert row == (True,)
    with pytest.raises(psycopg.OperationalError):
        for _ in range(50):
            victim.execute("SELECT 1")
            time.sleep(0.05)
    victim.close()


def test_a_notify_carries_the_listeners_reported_pid_of_the_sender(clusters: Clusters, proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.dsn("alice", "app", "alice-pw"), autocommit=True) as listener, \
            psycopg.connect(proxy.dsn("alice", "app", "alice-pw"), autocommit=True) as sender:
        listener.execute("LISTEN fidelity")
        sender.execute("NOTIFY fidelity, 'hello'")
        sender.execute("SELECT pg_notify('fidelity', 'self')")
        listener.execute("NOTIFY fidelity, 'own'")
        notices = []
        for notify in listener.notifies(timeout=5, stop_after=3):
            notices.append((notify.payload, notify.pid))
        assert sorted(notices) == sorted([("hello", sender.info.backend_pid), ("self", sender.info.backend_pid),
                                          ("own", listener.info.backend_pid)])


def test_cancels_cross_clusters_by_pid_and_secret_and_guesses_are_rate_limited(
        clusters: Clusters, proxy: ProxyProcess) -> None:
    sessions = {user: psycopg.connect(proxy.dsn(user, "app", clusters.tenants[user].password))
                for user in ("alice", "bob")}
    try:
        for connection in sessions.values():  # each cancel reaches the cluster of its own session
            timer = threading.Timer(0.3, connection.cancel)
            timer.start()
            with pytest.raises(psycopg.errors.QueryCanceled):
                connection.execute("SELECT pg_sleep(20)")
            timer.join()
            connection.rollback()
        pid = sessions["alice"].info.backend_pid
        for guess in range(25):  # a client guessing secrets: after 20 failures nothing is looked up
            assert raw_exchange(proxy.port, wire.encode_cancel_request(pid, guess.to_bytes(4, "big"))) == b""
        timer = threading.Timer(0.3, sessions["alice"].cancel)  # the real key, from the same address: ignored
        timer.start()
        started = time.monotonic()
        sessions["alice"].execute("SELECT pg_sleep(1.5)")
        timer.join()
        assert time.monotonic() - started >= 1.4
    finally:
        for connection in sessions.values():
            connection.close()
