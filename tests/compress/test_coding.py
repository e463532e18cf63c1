"""The entropy coders and tensor codings of format 2, against exact references."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from dlkernels.compress._bits import BitReader, BitWriter, ByteReader, Corrupt  # noqa: E402
from dlkernels.compress._format2 import (_decode_tensor, _read_floats, _write_floats,  # noqa: E402
                                         encode_tensor)
from dlkernels.compress._streams import (_normalise, decode_streams, plan, read_table,  # noqa: E402
                                         write_streams, write_table)


def _round_trip(streams):
    w = BitWriter()
    for s in streams:
        write_table(w, s)
    huff, rans = write_streams(streams)
    r = BitReader(w.getvalue())
    tables = [read_table(r, s.alphabet, s.count) for s in streams]
    return decode_streams(tables, huff, rans), len(huff) + len(rans)


def _entropy_bits(symbols, alphabet) -> float:
    counts = np.bincount(symbols, minlength=alphabet)
    p = counts[counts > 0] / symbols.size
    return float(-(counts[counts > 0] * np.log2(p)).sum())


class TestRans:
    @pytest.mark.parametrize("alphabet, skew", [(2, 0.99), (2, 0.5), (17, 1.2), (300, 1.05),
                                                (4000, 1.01)])
    def test_within_its_entropy_bound(self, rng, alphabet, skew):
        """Coded size <= cross-entropy of the quantised frequencies + flush (4 bytes) + 1,
        and within 1% (plus the flush) of the data's own entropy."""
        n = 50_000
        if alphabet == 2:
            symbols = (rng.random(n) > skew).astype(np.int64)
        else:
            symbols = np.minimum(rng.zipf(skew + 0.1, n) - 1, alphabet - 1)
        rans = next(s for s in plan(symbols, alphabet) if s.coder == "rans")
        (decoded,), n_bytes = _round_trip([rans])
        np.testing.assert_array_equal(decoded, symbols)
        used = rans.freq[symbols]
        cross = float(np.sum(rans.scale - np.log2(used)))
        assert n_bytes * 8 <= cross + 32 + 8
        assert n_bytes * 8 <= _entropy_bits(symbols, alphabet) * 1.01 + 40

    def test_beats_huffman_where_one_symbol_dominates(self, rng):
        symbols = (rng.random(20_000) < 0.03).astype(np.int64)     # ~0.19 bits of entropy each
        by_coder = {s.coder: s.cost_bits for s in plan(symbols, 2)}
        assert by_coder["huffman"] >= 20_000                       # at least a bit a symbol
        assert by_coder["rans"] < 0.25 * 20_000

    @given(st.lists(st.integers(0, 9), min_size=2, max_size=400), st.integers(0, 3))
    def test_several_streams_share_one_state(self, a, extra):
        a = np.asarray(a)
        streams = [s for s in plan(a, 10) if s.coder == "rans"][:1]
        b = (a[::-1] + extra) % 10
        streams += [s for s in plan(b, 10) if s.coder == "rans"][:1]
        if len(streams) < 2:
            return   # a one-symbol stream has no rANS option
        decoded, _ = _round_trip(streams)
        np.testing.assert_array_equal(decoded[0], a)
        np.testing.assert_array_equal(decoded[1], b)

    def test_corrupted_streams_are_refused(self, rng):
        symbols = rng.integers(0, 5, 3000)
        (rans,) = [s for s in plan(symbols, 5) if s.coder == "rans"]
        _, data = write_streams([rans])
        for bad in (data[:-1], data + b"\0", data[:2], bytes([data[0] ^ 0x40]) + data[1:]):
            with pytest.raises(Corrupt):
                decode_streams([rans], b"", bad)

    @given(st.lists(st.integers(0, 1000), min_size=1, max_size=30), st.integers(1, 16))
    def test_normalised_frequencies_sum_to_scale(self, counts, scale):
        counts = np.asarray(counts)
        if (counts > 0).sum() > 2**scale or not counts.any():
            return
        freq = _normalise(counts, scale)
        assert freq.sum() == 2**scale
        assert ((freq > 0) == (counts > 0)).all()


class TestCodebooks:
    @given(st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=40))
    def test_floats_are_stored_exactly(self, values):
        values = np.asarray(values, dtype=np.float32)
        w = BitWriter()
        _write_floats(w, values, (8, 23))
        back = _read_floats(BitReader(w.getvalue()), values.size, np.float32, (8, 23))
        np.testing.assert_array_equal(back.view(np.uint32), values.view(np.uint32))

    def test_rounded_codebooks_take_fewer_bits(self, rng):
        values = rng.standard_normal(31).astype(np.float32)
        full, short = BitWriter(), BitWriter()
        _write_floats(full, values, (8, 23))
        mantissa, exponent = np.frexp(values)
        _write_floats(short, np.ldexp(np.round(mantissa * 256) / 256, exponent).astype(np.float32),
                      (8, 23))
        assert short.n_bits <= 31 * (1 + 8 + 7) + 20 < full.n_bits

    @given(st.lists(st.floats(-100, 100, allow_nan=False, allow_subnormal=False, width=32),
                    min_size=1, max_size=20), st.integers(1, 12))
    def test_round_codebooks_is_round_half_even(self, values, m):
        """Against exact rationals: the nearest value with m mantissa bits, ties to even."""
        from dlkernels.compress import quantize, round_codebooks

        layer = torch.nn.Sequential(torch.nn.Linear(len(values), 1, bias=False))
        quantize(layer, bits=1)
        with torch.no_grad():
            layer[0].weight_codebook.data = torch.tensor(values, dtype=torch.float32)
            layer[0].weight_index.copy_(torch.ones(1, len(values), dtype=torch.int32))
        round_codebooks(layer, m)
        got = layer[0].weight_codebook.detach().numpy()
        for x, y in zip(values, got.tolist()):
            assert Fraction(y) == _round_exact(Fraction(float(np.float32(x))), m)


def _round_exact(x: Fraction, m: int) -> Fraction:
    if x == 0:
        return x
    e = math.floor(math.log2(abs(x)))
    while abs(x) >= 2 ** (e + 1):
        e += 1
    while abs(x) < 2 ** e:
        e -= 1
    step = Fraction(2) ** (e - m)
    q = x / step
    n = math.floor(q)
    if q - n > Fraction(1, 2) or (q - n == Fraction(1, 2) and n % 2):
        n += 1
    return n * step


class TestTensorCodings:
    def _decode(self, enc, n, dtype_code=0):
        reader = ByteReader(enc.data)
        out = _decode_tensor(reader, n, dtype_code)
        assert reader.pos == len(enc.data)
        return out

    def test_joint_coding_wins_when_gaps_and_values_depend(self, rng):
        # After a short gap the index is 1, after a long one 2: the joint symbol says both.
        gaps = rng.choice([0, 5], size=3000)
        positions = np.cumsum(gaps + 1) - 1
        index = np.zeros(positions[-1] + 1, dtype=np.int64)
        index[positions] = np.where(gaps == 0, 1, 2)
        codebook = np.array([-0.5, 0.25], dtype=np.float32)
        enc = encode_tensor((codebook, index), "float32")
        assert enc.kind == "quantized joint"
        np.testing.assert_array_equal(self._decode(enc, index.size),
                                      np.array([0, -0.5, 0.25], np.float32)[index])

    @given(st.integers(1, 2000), st.floats(0, 1), st.integers(1, 6), st.integers(0, 2**32 - 1))
    def test_every_coding_round_trips(self, n, density, bits, seed):
        g = np.random.default_rng(seed)
        index = np.where(g.random(n) < density, g.integers(1, 2**bits, n), 0)
        codebook = g.standard_normal(2**bits - 1).astype(np.float32)
        enc = encode_tensor((codebook, index), "float32")
        want = np.concatenate([[0], codebook]).astype(np.float32)[index]
        np.testing.assert_array_equal(self._decode(enc, n), want)
        floats = encode_tensor(want, "float32")
        np.testing.assert_array_equal(self._decode(floats, n), want)

    def test_bfloat16_and_int_tensors(self):
        from dlkernels.compress import load_compressed, save_compressed
        import tempfile
        import os

        model = torch.nn.Sequential(torch.nn.Linear(5, 3)).to(torch.bfloat16)
        with tempfile.TemporaryDirectory() as tmp:
            save_compressed(model, os.path.join(tmp, "b.fdlz"))
            loaded = load_compressed(os.path.join(tmp, "b.fdlz"))
        assert loaded[0].weight.dtype == torch.bfloat16
        assert torch.equal(loaded[0].weight, model[0].weight)
