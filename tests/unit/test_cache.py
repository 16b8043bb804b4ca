import pytest

from helpers.cache import TTLCache


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_get_set_and_stats():
    c = TTLCache(maxsize=3, ttl=10, clock=Clock())
    assert c.get("a") is None and c.get("a", 5) == 5
    c.set("a", 1)
    assert c.get("a") == 1
    assert "a" in c and "b" not in c
    assert len(c) == 1
    assert (c.hits, c.misses, c.evictions) == (1, 2, 0)
    assert c.stats["hits"] == 1 and c.stats["size"] == 1


def test_lru_eviction_respects_recent_reads():
    c = TTLCache(maxsize=2, ttl=10, clock=Clock())
    c.set("a", 1)
    c.set("b", 2)
    c.get("a")  # a is now most recent
    c.set("c", 3)
    assert "b" not in c and "a" in c and "c" in c
    assert c.evictions == 1 and len(c) == 2


def test_overwrite_does_not_grow():
    c = TTLCache(maxsize=2, ttl=10, clock=Clock())
    for i in range(100):
        c.set("k", i)
    assert len(c) == 1 and c.get("k") == 99 and c.evictions == 0


def test_bounded_under_many_inserts():
    c = TTLCache(maxsize=100, ttl=10, clock=Clock())
    for i in range(10_000):
        c.set(i, i)
    assert len(c) == 100 and c.evictions == 9_900
    assert c.get(9_999) == 9_999 and c.get(0) is None


def test_ttl_expiry():
    clock = Clock()
    c = TTLCache(maxsize=10, ttl=5, clock=clock)
    c.set("a", 1)
    clock.t = 4.9
    assert c.get("a") == 1
    clock.t = 5.0
    assert c.get("a") is None
    assert len(c) == 0 and c.misses == 1 and c.expirations == 1


def test_reads_do_not_extend_ttl():
    clock = Clock()
    c = TTLCache(maxsize=10, ttl=5, clock=clock)
    c.set("a", 1)
    for t in (1, 2, 3, 4):
        clock.t = t
        assert c.get("a") == 1
    clock.t = 5
    assert c.get("a") is None


def test_contains_expires_without_touching_stats():
    clock = Clock()
    c = TTLCache(maxsize=10, ttl=5, clock=clock)
    c.set("a", 1)
    clock.t = 6
    assert "a" not in c
    assert len(c) == 0 and c.hits == 0 and c.misses == 0


def test_pop():
    clock = Clock()
    c = TTLCache(maxsize=10, ttl=5, clock=clock)
    c.set("a", 1)
    c.set("b", 2)
    assert c.pop("a") == 1 and "a" not in c
    assert c.pop("a", "gone") == "gone"
    clock.t = 10
    assert c.pop("b", "old") == "old" and len(c) == 0


def test_purge_expired():
    clock = Clock()
    c = TTLCache(maxsize=10, ttl=5, clock=clock)
    c.set("a", 1)
    clock.t = 3
    c.set("b", 2)
    clock.t = 6
    assert c.purge_expired() == 1
    assert len(c) == 1 and c.get("b") == 2
    assert c.purge_expired() == 0


def test_trim_drops_oldest():
    c = TTLCache(maxsize=10, ttl=5, clock=Clock())
    for k in "abcde":
        c.set(k, k)
    c.get("a")
    assert c.trim(2) == 2
    assert "b" not in c and "c" not in c and "a" in c
    assert c.trim(100) == 3 and len(c) == 0
    assert c.trim(1) == 0
    assert c.evictions == 5


def test_clear():
    c = TTLCache(maxsize=10, ttl=5, clock=Clock())
    c.set("a", 1)
    c.clear()
    assert len(c) == 0 and "a" not in c


@pytest.mark.parametrize("maxsize, ttl", [(0, 1), (-1, 1), (1, 0), (1, -5)])
def test_invalid_arguments(maxsize, ttl):
    with pytest.raises(ValueError):
        TTLCache(maxsize=maxsize, ttl=ttl)


def test_default_clock_works():
    c = TTLCache(maxsize=2, ttl=60)
    c.set("x", 1)
    assert c.get("x") == 1
    assert "TTLCache(maxsize=2" in repr(c)
