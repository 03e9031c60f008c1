"""Drives a three-node GridKV cluster with the cache libraries people put in
front of a Redis-compatible server, through their own cache APIs: redis-py
(default settings, RESP3), Flask-Caching (cachelib's RedisCache), Django's
built-in RedisCache, aiocache and dogpile.cache.

Run by `tests/cache_libraries.rs` as
`python3 cache_libraries.py PORT1 PORT2 PORT3`; prints one line per
library and exits 0 after `ok`, or non-zero with the failed assertion. A
missing library fails (it is not skipped).

Each library writes through one node and reads through the others where
its API allows (Django's RedisCache reads from the "replica" locations).
Clearing without a key prefix (FLUSHDB) empties the whole cluster, so
the libraries that do it (Django, Flask-Caching without a prefix) run
last.
"""

import asyncio
import sys
import time


def redis_py(ports):
    import redis

    a = redis.Redis(host="127.0.0.1", port=ports[0])
    b = redis.Redis(host="127.0.0.1", port=ports[1])
    assert a.set("rp:nx", "1", nx=True, ex=100) is True
    assert a.set("rp:nx", "2", nx=True) is None
    assert b.get("rp:nx") == b"1"
    assert a.setnx("rp:nx", "3") is False
    assert a.set("rp:xx", "1", xx=True) is None
    assert a.set("rp:nx", "4", xx=True) is True
    assert b.set("rp:nx", "5", get=True) == b"4"
    assert a.setex("rp:ex", 100, "v") is True
    assert 99 <= b.ttl("rp:ex") <= 100
    assert a.psetex("rp:pex", 100_000, "v") is True
    assert b.getex("rp:ex", persist=True) == b"v"
    assert a.ttl("rp:ex") == -1
    assert b.getdel("rp:ex") == b"v"
    assert a.get("rp:ex") is None
    assert a.type("rp:nx") == b"string" and a.type("rp:none") == b"none"
    assert a.strlen("rp:nx") == 1
    assert b.unlink("rp:nx", "rp:none") == 1
    assert a.touch("rp:pex", "rp:none") == 1
    at = int(time.time()) + 1000
    assert a.expireat("rp:pex", at) is True
    assert b.expiretime("rp:pex") == at
    # The default pipeline is MULTI/EXEC: an ordered batch.
    pipe = a.pipeline()
    pipe.set("rp:p1", "1").set("rp:p2", "2").mget("rp:p1", "rp:p2", "rp:none")
    assert pipe.execute() == [True, True, [b"1", b"2", None]]
    assert b.mget("rp:p1", "rp:p2") == [b"1", b"2"]
    # SCAN and KEYS walk the whole cluster, through any node.
    for i in range(300):
        a.set(f"rp:scan:{i}", "v")
    assert sorted(b.scan_iter(match="rp:scan:*", count=50)) == sorted(
        f"rp:scan:{i}".encode() for i in range(300)
    )
    assert len(a.keys("rp:scan:1*")) == 111
    # Counters: convergent, through any node.
    assert a.incr("rp:n") == 1 and b.incrby("rp:n", 10) == 11
    assert a.decr("rp:n") == 10 and b.decrby("rp:n", 4) == 6
    assert a.get("rp:n") == b"6"
    a.set("rp:n", 100)
    assert b.incr("rp:n") == 101


def flask_caching(ports):
    from flask_caching.backends.rediscache import RedisCache

    write = RedisCache(host="127.0.0.1", port=ports[0], key_prefix="fc:")
    read = RedisCache(host="127.0.0.1", port=ports[2], key_prefix="fc:")
    assert write.set("a", {"x": 1}, timeout=100)
    assert read.get("a") == {"x": 1}
    assert write.set("forever", [1, 2], timeout=0)
    assert read.get("forever") == [1, 2]
    assert write.add("a", "other") is False
    assert write.add("b", "first", timeout=100) is True
    assert read.get("b") == "first"
    assert write.set_many({"m1": 1, "m2": 2}, timeout=100)
    assert read.get_many("m1", "m2", "missing") == [1, 2, None]
    assert read.has("m1") and not read.has("missing")
    assert write.inc("n", 5) == 5 and write.dec("n", 2) == 3
    assert read.get("n") == 3
    assert write.delete("m1")
    assert read.get("m1") is None
    assert write.delete_many("m2", "b")
    assert read.get_many("m2", "b") == [None, None]
    # With a key prefix, clear is KEYS prefix* then DEL.
    assert write.clear()
    assert read.get("a") is None and read.get("forever") is None


def flask_caching_flush(ports):
    from flask_caching.backends.rediscache import RedisCache

    write = RedisCache(host="127.0.0.1", port=ports[1], key_prefix="")
    read = RedisCache(host="127.0.0.1", port=ports[0], key_prefix="")
    assert write.set("x", 1)
    # Without a key prefix, clear is FLUSHDB.
    assert write.clear()
    assert read.get("x") is None
    import redis

    assert redis.Redis(host="127.0.0.1", port=ports[2]).execute_command("GRIDKV.DBSIZE") == 0


def django_cache(ports):
    import django
    from django.conf import settings

    settings.configure(
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                # The first location takes writes, the others reads.
                "LOCATION": [f"redis://127.0.0.1:{p}" for p in ports],
            }
        }
    )
    django.setup()
    from django.core.cache import cache

    cache.set("dj:a", "v", timeout=100)
    assert cache.get("dj:a") == "v"
    assert cache.add("dj:a", "other") is False
    assert cache.add("dj:b", "first", timeout=100) is True
    assert cache.get("dj:b") == "first"
    cache.set_many({"dj:m1": 1, "dj:m2": 2}, timeout=100)
    assert cache.get_many(["dj:m1", "dj:m2", "dj:missing"]) == {"dj:m1": 1, "dj:m2": 2}
    assert cache.has_key("dj:m1")
    cache.set("dj:n", 10)
    assert cache.incr("dj:n", 5) == 15 and cache.decr("dj:n") == 14
    assert cache.get("dj:n") == 14
    assert cache.touch("dj:m1", timeout=50) is True
    assert cache.touch("dj:missing", timeout=50) is False
    assert cache.delete("dj:m1") is True
    assert cache.get("dj:m1") is None
    cache.delete_many(["dj:m2", "dj:b"])
    assert cache.get_many(["dj:m2", "dj:b"]) == {}
    assert cache.get_or_set("dj:gos", lambda: "made", timeout=100) == "made"
    assert cache.get("dj:gos") == "made"
    # clear() is FLUSHDB: the whole cluster, through the write location;
    # its reads go to the others.
    cache.clear()
    assert cache.get("dj:gos") is None and cache.get("dj:a") is None
    cache.set("dj:after", 1)
    assert cache.get("dj:after") == 1


def aiocache_lib(ports):
    from aiocache import RedisCache
    from aiocache.serializers import PickleSerializer

    async def run():
        write = RedisCache(endpoint="127.0.0.1", port=ports[1], serializer=PickleSerializer())
        read = RedisCache(endpoint="127.0.0.1", port=ports[0], serializer=PickleSerializer())
        assert await write.set("ac:a", {"x": 1}, ttl=100)
        assert await read.get("ac:a") == {"x": 1}
        assert await write.add("ac:b", "first", ttl=100)
        try:
            await write.add("ac:b", "second")
            raise AssertionError("add of a present key succeeded")
        except ValueError:
            pass
        assert await read.get("ac:b") == "first"
        assert await write.multi_set([("ac:m1", 1), ("ac:m2", 2)], ttl=100)
        assert await read.multi_get(["ac:m1", "ac:m2", "ac:none"]) == [1, 2, None]
        assert await read.exists("ac:m1")
        assert await write.increment("ac:n", 3) == 3
        assert await write.increment("ac:n", -1) == 2
        assert await write.expire("ac:m1", 50)
        assert await write.delete("ac:m1") == 1
        assert await read.get("ac:m1") is None
        # With a namespace, clear is KEYS ns:* then DEL.
        assert await write.set("a", 1, namespace="acns")
        assert await write.clear(namespace="acns")
        assert await read.get("a", namespace="acns") is None
        assert await read.get("ac:a") == {"x": 1}, "outside the namespace"
        await write.close()
        await read.close()

    asyncio.run(run())


def dogpile(ports):
    from dogpile.cache import make_region
    from dogpile.cache.api import NO_VALUE

    def region(port):
        return make_region().configure(
            "dogpile.cache.redis",
            arguments={"host": "127.0.0.1", "port": port, "redis_expiration_time": 100},
        )

    write, read = region(ports[2]), region(ports[1])
    write.set("dp:a", "v")
    assert read.get("dp:a") == "v"
    calls = []

    def create():
        calls.append(1)
        return "made"

    assert write.get_or_create("dp:c", create) == "made"
    assert write.get_or_create("dp:c", create) == "made"
    assert len(calls) == 1 and read.get("dp:c") == "made"
    write.set_multi({"dp:m1": 1, "dp:m2": 2})
    assert read.get_multi(["dp:m1", "dp:m2"]) == [1, 2]
    write.delete("dp:m1")
    write.delete_multi(["dp:m2"])
    assert read.get("dp:m1") is NO_VALUE and read.get("dp:m2") is NO_VALUE


def main(ports):
    for name, run in [
        ("redis-py", redis_py),
        ("flask-caching", flask_caching),
        ("aiocache", aiocache_lib),
        ("dogpile.cache", dogpile),
        ("django", django_cache),
        ("flask-caching without a prefix", flask_caching_flush),
    ]:
        run(ports)
        print(name, "ok", flush=True)
    print("ok")


if __name__ == "__main__":
    main([int(p) for p in sys.argv[1:4]])
