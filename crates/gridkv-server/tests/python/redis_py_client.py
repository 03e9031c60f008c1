"""Drives a GridKV node with redis-py at its current version and its
DEFAULT settings (redis-py 8 opens with `HELLO 3` and `CLIENT SETINFO`).

Run by `tests/clients.rs` as `python3 redis_py_client.py PORT`; exits 0
after printing `ok`, or non-zero with the failed assertion. A missing
`redis` module fails (it is not skipped): install it with
`pip install redis`.
"""

import sys

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def expect_error(call, *words):
    try:
        call()
    except redis.RedisError as e:  # WRONGPASS is an AuthenticationError
        text = str(e)
        assert all(w in text for w in words), text
        return text
    raise AssertionError(f"no error; expected one containing {words}")


def main(port):
    r = redis.Redis(host="127.0.0.1", port=port)

    # Connect: redis-py 8 opens with HELLO 3 by default, then names its
    # library with CLIENT SETINFO.
    assert r.ping() is True
    info = r.client_info()
    assert info["resp"] == "3", info
    assert info["lib-name"] == "redis-py", info
    assert info["lib-ver"] == redis.__version__, info

    # Strings, nulls, multi-key.
    assert r.set("py:a", "1") is True
    assert r.get("py:a") == b"1"
    assert r.get("py:missing") is None
    assert r.mset({"py:b": "2", "py:c": b"\x00\xff"}) is True
    assert r.mget("py:a", "py:missing", "py:c") == [b"1", None, b"\x00\xff"]
    assert r.exists("py:a", "py:b", "py:missing", "py:a") == 3
    assert r.delete("py:a", "py:missing") == 1
    assert r.get("py:a") is None

    # Expiry.
    assert r.set("py:t", "v", ex=100) is True
    assert 99 <= r.ttl("py:t") <= 100
    assert r.ttl("py:missing") == -2
    assert r.expire("py:b", 50) is True
    assert r.expire("py:missing", 50) is False
    assert 49_000 <= r.pttl("py:b") <= 50_000
    assert r.persist("py:b") is True
    assert r.ttl("py:b") == -1

    # INFO, parsed by redis-py into a dict (a verbatim string in RESP3).
    server = r.info("server")
    assert server["node_id"] == "n1", server
    assert server["tcp_port"] == port, server
    everything = r.info()
    assert "used_memory" in everything and "quorum_writes" in everything
    assert r.dbsize() >= 3

    # CONFIG GET (a map in RESP3), CLIENT, HELLO.
    config = r.config_get("max*")
    assert config["maxclients"] == "10000", config
    assert r.client_setname("py-client") is True
    assert r.client_getname() == "py-client"
    assert isinstance(r.client_id(), int)
    hello = r.execute_command("HELLO")
    assert hello[b"server"] == b"gridkv", hello
    assert hello[b"proto"] == 3, hello

    # Errors.
    expect_error(lambda: r.set("k", "v", keepttl=True), "SET KEEPTTL is not supported")
    expect_error(lambda: r.execute_command("NOSUCH"), "unknown command")
    expect_error(lambda: r.execute_command("GET"), "wrong number of arguments")
    expect_error(lambda: r.execute_command("HELLO", 4), "unsupported protocol")
    # redis-py raises WRONGPASS as an AuthenticationError, which its
    # default policy retries with backoff (seconds): ask without retries.
    once = redis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
    expect_error(
        lambda: once.execute_command("HELLO", 3, "AUTH", "bob", "x"),
        "invalid username-password pair",
    )

    # Pipelines answer in order.
    pipe = r.pipeline(transaction=False)
    for i in range(50):
        pipe.set(f"py:p{i}", i)
    for i in range(50):
        pipe.get(f"py:p{i}")
    results = pipe.execute()
    assert results[:50] == [True] * 50
    assert results[50:] == [str(i).encode() for i in range(50)]

    # An explicit RESP2 client too.
    r2 = redis.Redis(host="127.0.0.1", port=port, protocol=2)
    assert r2.get("py:missing") is None
    assert r2.client_info()["resp"] == "2"
    assert r2.config_get("databases") == {"databases": "1"}
    print("ok")


if __name__ == "__main__":
    main(int(sys.argv[1]))
