"""dlkernels._lib.validation: the input checks every facade relies on."""

import numpy as np
import pytest

from dlkernels._lib.validation import (as_float_array, as_index_array, check_count, check_real,
                                    check_shape)


class TestAsFloatArray:
    @pytest.mark.parametrize("x", [[1, 2, 3], (1.0, 2.5), np.arange(4, dtype=np.int8),
                                   np.arange(4, dtype=np.uint64), np.ones(3, np.float32),
                                   np.array([True, False])])
    def test_numeric_input_becomes_contiguous_float64(self, x):
        got = as_float_array(x, "w")
        assert got.dtype == np.float64 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, np.asarray(x, dtype=np.float64))

    def test_strided_input(self):
        x = np.arange(20.0)[::3]
        got = as_float_array(x, "w")
        assert got.flags.c_contiguous
        np.testing.assert_array_equal(got, x)

    def test_zero_dimensional_with_ndim_none(self):
        got = as_float_array(2.5, "w", ndim=None)
        assert got.shape == () and float(got) == 2.5

    @pytest.mark.parametrize("bad, pos", [([1.0, np.nan], 1), ([np.inf, 1.0], 0), ([1.0, 2.0, -np.inf], 2)])
    def test_non_finite_names_argument_and_position(self, bad, pos):
        with pytest.raises(ValueError, match=rf"weights must be finite.*position {pos}"):
            as_float_array(bad, "weights")

    def test_negative(self):
        as_float_array([-1.0, 2.0], "w")  # allowed unless asked
        with pytest.raises(ValueError, match=r"weights must be non-negative, got -1\.5 at position 1"):
            as_float_array([1.0, -1.5, 2.0], "weights", nonnegative=True)

    def test_ndim(self):
        with pytest.raises(ValueError, match="weights must be 1-dimensional"):
            as_float_array([[1.0, 2.0]], "weights")
        with pytest.raises(ValueError, match="weights must be 2-dimensional"):
            as_float_array([1.0, 2.0], "weights", ndim=2)
        assert as_float_array([[1.0]], "w", ndim=None).shape == (1, 1)

    def test_empty(self):
        with pytest.raises(ValueError, match="weights must not be empty"):
            as_float_array([], "weights")
        assert as_float_array([], "weights", allow_empty=True).shape == (0,)

    @pytest.mark.parametrize("bad", [["a", "b"], np.array([1, 2], dtype=object), [1 + 2j, 3],
                                     np.array(["2021-01-01"], dtype="datetime64[D]"), [[1, 2], [3]],
                                     {"a": 1}])
    def test_wrong_dtype(self, bad):
        with pytest.raises(TypeError, match="weights"):
            as_float_array(bad, "weights")


class TestAsIndexArray:
    @pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint64])
    def test_integer_dtypes(self, dtype):
        got = as_index_array(np.array([0, 3, 2], dtype=dtype), "idx", 4)
        assert got.dtype == np.int64 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, [0, 3, 2])

    def test_scalar_is_one_element_for_ndim_1(self):
        np.testing.assert_array_equal(as_index_array(2, "idx", 4), [2])
        assert as_index_array(2, "idx", 4, ndim=None).shape == ()

    @pytest.mark.parametrize("bad, value", [([0, 4], 4), ([-1, 2], -1), ([2**40], 2**40)])
    def test_out_of_range(self, bad, value):
        with pytest.raises(IndexError, match=rf"idx must lie in \[0, 4\), got {value}"):
            as_index_array(bad, "idx", 4)

    def test_huge_unsigned(self):
        with pytest.raises(IndexError, match="idx"):
            as_index_array(np.array([2**64 - 1], dtype=np.uint64), "idx", 4)

    @pytest.mark.parametrize("bad", [[0.0, 1.0], [True, False], ["0"], [1j],
                                     np.array([0], dtype=object)])
    def test_non_integer(self, bad):
        with pytest.raises(TypeError, match="idx"):
            as_index_array(bad, "idx", 4)

    def test_ndim(self):
        with pytest.raises(ValueError, match="idx must be 1-dimensional"):
            as_index_array([[0, 1]], "idx", 4)
        assert as_index_array([[0, 1]], "idx", 4, ndim=None).shape == (1, 2)

    def test_empty_keeps_its_shape(self):
        got = as_index_array(np.empty((0, 3)), "idx", 4, ndim=2)
        assert got.shape == (0, 3) and got.dtype == np.int64


class TestCheckCount:
    @pytest.mark.parametrize("n", [0, 1, 10**12, np.int64(3), np.uint16(3)])
    def test_ok(self, n):
        got = check_count(n, "n")
        assert type(got) is int and got == int(n)

    def test_negative(self):
        with pytest.raises(ValueError, match="n must be a non-negative int, got -1"):
            check_count(-1, "n")

    @pytest.mark.parametrize("bad", [True, np.bool_(False), 1.0, 1.5, "2", None, np.array([2])])
    def test_wrong_type(self, bad):
        with pytest.raises(TypeError, match="size"):
            check_count(bad, "size")


class TestCheckShape:
    @pytest.mark.parametrize("shape, want", [(3, (3,)), ((2, 3), (2, 3)), ([4], (4,)), ((), ()),
                                             (np.int64(2), (2,)), ((0, 5), (0, 5))])
    def test_ok(self, shape, want):
        assert check_shape(shape) == want

    def test_negative_dimension(self):
        with pytest.raises(ValueError, match="size"):
            check_shape((2, -1), "size")

    @pytest.mark.parametrize("bad", [1.5, True, (2, 1.5), (True, 2), None, "ab"])
    def test_wrong_type(self, bad):
        with pytest.raises(TypeError, match="size"):
            check_shape(bad, "size")


class TestCheckReal:
    @pytest.mark.parametrize("x", [0, 1, 0.5, np.float32(0.25), np.int64(1)])
    def test_ok(self, x):
        got = check_real(x, "a", low=0.0, high=1.0)
        assert type(got) is float and got == float(x)

    @pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
    def test_non_finite(self, bad):
        with pytest.raises(ValueError, match="alpha must be finite"):
            check_real(bad, "alpha")

    def test_bounds(self):
        with pytest.raises(ValueError, match="beta must be >= 0"):
            check_real(-0.1, "beta", low=0.0)
        with pytest.raises(ValueError, match="beta must be <= 1"):
            check_real(1.01, "beta", high=1.0)
        with pytest.raises(ValueError, match="beta must be > 0"):
            check_real(0.0, "beta", low=0.0, low_open=True)
        assert check_real(1.0, "beta", low=0.0, high=1.0) == 1.0

    @pytest.mark.parametrize("bad", [True, np.bool_(True), "1", None, 1j, [1.0]])
    def test_wrong_type(self, bad):
        with pytest.raises(TypeError, match="alpha"):
            check_real(bad, "alpha")
