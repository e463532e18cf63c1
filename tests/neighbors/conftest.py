"""Fixtures of the LSHIndex tests: every metric, every hash family."""

import pytest

from .lsh_support import HASHINGS, METRICS


@pytest.fixture(params=METRICS)
def metric(request):
    return request.param


@pytest.fixture(params=HASHINGS)
def hashing(request):
    return request.param
