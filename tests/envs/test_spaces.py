"""Discrete and Box spaces of envs/spaces.py: shapes, dtypes and membership."""

from __future__ import annotations

import numpy as np
import pytest
from stackrl.envs.spaces import Box, Discrete


def test_discrete_is_a_scalar_int64_space():
    d = Discrete(5)
    assert d.shape == () and d.dtype == "int64"


def test_discrete_contains_integers_in_range_only():
    d = Discrete(3)
    assert d.contains(np.array([0, 1, 2]))
    assert d.contains(np.array([2], np.uint8))
    assert not d.contains(np.array([0, 3]))
    assert not d.contains(np.array([-1, 0]))
    assert not d.contains(np.array([0.0, 1.0]))  # floats are not actions or Discrete observations


def test_box_checks_the_trailing_shape_and_bounds():
    b = Box((2, 3), "uint8", 0, 255)
    assert b.contains(np.zeros((7, 2, 3), np.uint8))  # any leading batch axes
    assert b.contains(np.full((2, 3), 255))
    assert not b.contains(np.zeros((7, 3, 2)))
    assert not b.contains(np.full((2, 3), 256))
    assert not b.contains(np.full((2, 3), -1))


def test_box_defaults_to_unbounded_float32():
    b = Box((4,))
    assert b.dtype == "float32" and b.low == -np.inf and b.high == np.inf
    assert b.contains(np.array([[-1e30, 0, 1, 1e30]]))
    assert not b.contains(np.array([[np.nan, 0, 1, 2]]))  # NaN is in no interval


def test_spaces_are_frozen_and_compare_by_value():
    assert Discrete(4) == Discrete(4) and Discrete(4) != Discrete(5)
    assert Box((2,)) == Box((2,), "float32")
    with pytest.raises(AttributeError):
        Discrete(4).n = 5  # type: ignore[misc]
