"""The one exponential back-off every retry in spotkit uses."""

import pytest

from spotkit.backoff import Backoff
from spotkit.flows import RetryPolicy


def test_waits_grow_and_are_capped_even_after_very_many_failures():
    b = Backoff(first=0.5, factor=3, maximum=20)
    assert b.delays(5) == [0.5, 1.5, 4.5, 13.5, 20.0]
    assert b.delay(10_000) == 20.0  # no overflow after a week-long outage
    assert Backoff(0).delays(3) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("kwargs", [{"first": -1}, {"first": 1, "factor": 0.5},
                                    {"first": 1, "maximum": -2}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="back-off"):
        Backoff(**kwargs)
    with pytest.raises(ValueError, match="start at 1"):
        Backoff(1).delay(0)


def test_the_rules_retry_policy_is_the_same_backoff():
    policy = RetryPolicy(attempts=4, backoff=10, factor=2, max_backoff=25)
    assert policy.delays() == Backoff(10, 2, 25).delays(3) == [10.0, 20.0, 25.0]
