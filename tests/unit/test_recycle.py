"""Recycling limits (gdaemon.workers.recycle): option checks and one instance's progress."""

import random

import pytest

from gdaemon import GreenletWorker, Worker
from gdaemon.errors import ConfigError, WorkerError
from gdaemon.workers.recycle import RecycleLife, RecyclePolicy, parse_size


class W(Worker):
    def loop(self):
        pass


class G(GreenletWorker):
    def loop(self):
        pass


@pytest.mark.parametrize("text, size", [
    (4096, 4096), ("512M", 512 << 20), ("2G", 2 << 30), ("1.5g", 3 << 29), ("100k", 102400),
    ("64MB", 64 << 20), ("64MiB", 64 << 20), ("1000", 1000), (" 8 M ", 8 << 20),
])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "", "-1M", "0", 0, -5, True, 1.5, "12X", None])
def test_what_is_not_a_size(text):
    with pytest.raises(ValueError, match="expected a"):
        parse_size(text)


def test_no_option_no_policy():
    assert RecyclePolicy.from_options(W("w")) is None


@pytest.mark.parametrize("options, error, message", [
    ({"maxrss": "lots"}, ConfigError, "invalid maxrss for worker 'w': expected a size like \"512M\", got 'lots'"),
    ({"maxloops": 0}, ConfigError, "invalid maxloops 0 for worker 'w': expected an integer > 0"),
    ({"maxloops": 2.5}, ConfigError, "invalid maxloops 2.5"),
    ({"maxloops": 5, "maxloopsjitter": -1}, ConfigError, "invalid maxloopsjitter -1"),
    ({"maxage": 0}, ConfigError, "invalid maxage 0 for worker 'w': expected a positive number"),
    ({"maxage": float("inf")}, ConfigError, "invalid maxage inf"),
    ({"maxage": 5, "maxagejitter": "x"}, ConfigError, "invalid maxagejitter 'x'"),
    ({"maxloopsjitter": 3}, ConfigError, "maxloopsjitter of worker 'w' needs maxloops"),
    ({"maxagejitter": 3}, ConfigError, "maxagejitter of worker 'w' needs maxage"),
])
def test_bad_options_name_the_option_and_the_worker(options, error, message):
    with pytest.raises(error) as caught:
        RecyclePolicy.from_options(W("w"), **options)
    assert str(caught.value).startswith(message)


def test_maxrss_is_for_forked_workers_maxloops_and_maxage_for_all():
    with pytest.raises(WorkerError, match="worker 'g': maxrss is for forked workers"):
        RecyclePolicy.from_options(G("g"), maxrss="100M")
    policy = RecyclePolicy.from_options(G("g"), maxloops=10, maxage=60)
    assert (policy.maxloops, policy.maxage, policy.maxrss) == (10, 60, None)


def test_each_life_draws_its_own_jitter_within_bounds():
    policy = RecyclePolicy.from_options(W("w"), maxloops=100, maxloopsjitter=10, maxage=60,
                                        maxagejitter=5)
    rng = random.Random(7)
    lives = [policy.life(rng) for _ in range(200)]
    assert all(100 <= life.loops <= 110 for life in lives)
    assert all(60 <= life.age <= 65 for life in lives)
    assert len({life.loops for life in lives}) > 5  # not all due together


def test_a_life_is_due_at_its_loops_or_its_age_whichever_first():
    life = RecycleLife(loops=10, age=30.0)
    assert not life.check(9, 29.9)
    assert life.check(10, 1.0)
    assert life.due == ("maxloops", 10)
    assert life.check(50, 100.0) and life.due == ("maxloops", 10)  # the first figure stays
    aged = RecycleLife(loops=10, age=30.0)
    assert aged.check(3, 30.25) and aged.due == ("maxage", 30.25)


def test_memory_must_be_over_twice_in_a_row():
    life = RecycleLife(rss=1000)
    assert not life.check_rss(2000)   # a spike
    assert not life.check_rss(900)    # back under: the count starts again
    assert not life.check_rss(1500)
    assert not life.check_rss(None)   # an unreadable reading changes nothing
    assert life.check_rss(1600)
    assert life.due == ("maxrss", 1600)
    assert not RecycleLife(loops=5).check_rss(10 ** 12)  # no maxrss: never by memory
