"""The test suite's own redis-server: real, on loopback, and restartable on the same port."""

from __future__ import annotations

import redis
from redis_server import RedisServer


def test_session_server_answers(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=2)
    try:
        assert client.ping() is True
        assert client.connection_pool.connection_kwargs["host"] == "127.0.0.1"
    finally:
        client.close()


def test_private_server_can_be_killed_and_restarted(private_redis: RedisServer) -> None:
    client = redis.Redis.from_url(private_redis.url, socket_timeout=1)
    try:
        client.set("k", "v")
        private_redis.stop()
        try:
            client.ping()
        except redis.ConnectionError:
            pass
        else:  # pragma: no cover - the server is gone
            raise AssertionError("a killed server answered")
        private_redis.start()
        assert client.ping() is True
        assert client.get("k") is None  # nothing persisted: a crash loses what it held
    finally:
        client.close()
