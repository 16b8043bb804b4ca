"""harness/postgres.py: a real cluster on loopback, and nothing left of it after stop()."""

import asyncio
import socket

import asyncpg
import pytest

from harness.postgres import PostgresCluster, PostgresUnavailable


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_cluster_starts_serves_and_leaves_nothing_behind():
    try:
        cluster = PostgresCluster().start()
    except PostgresUnavailable as e:
        pytest.skip(str(e))  # the pg_cluster fixture is what fails under CI
    root, port = cluster.root, cluster.port
    try:
        url = cluster.create_database()

        async def ask():
            conn = await asyncpg.connect(url)
            try:
                return await conn.fetchval("SHOW listen_addresses")
            finally:
                await conn.close()

        assert asyncio.run(ask()) == "127.0.0.1"  # loopback only
        cluster.drop_database(url)
    finally:
        cluster.stop()
    assert not root.exists() and not _listening(port)
