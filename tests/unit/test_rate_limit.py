from helpers.rate_limit import RateLimiter


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_burst_then_one_warning_then_silence_then_refill():
    clock = Clock()
    rl = RateLimiter(per_minute=6, clock=clock)
    assert all(rl.hit(1) == (True, None) for _ in range(6))
    allowed, wait = rl.hit(1)
    assert not allowed and 9 < wait <= 10  # one token every 10 s
    assert rl.hit(1) == (False, None)  # told once per burst
    assert rl.hit(2) == (True, None)  # other users unaffected
    clock.t += 10
    assert rl.hit(1) == (True, None)
    allowed, wait = rl.hit(1)  # a new burst is told again
    assert not allowed and wait is not None


def test_users_capped():
    clock = Clock()
    rl = RateLimiter(per_minute=5, max_users=100, clock=clock)
    for uid in range(1000):
        rl.hit(uid)
    assert len(rl) <= 100
