"""Entropy-coding loops: canonical Huffman decoding and a static rANS coder.

The Python callers (``dlkernels.huffman``, ``dlkernels.compress``) check every
table before it gets here (Kraft's inequality, frequencies that sum to
``2**scale_bits``, symbols in range); these loops then check the *stream*:
running out of bytes, a bit pattern that is no code, or a final state that is
not the encoder's start state are reported as negative return values, never
read past a buffer.

rANS (Duda 2013; the byte-wise variant of Giesen's ryg_rans): a 32-bit state
kept in ``[2**23, 2**31)``, renormalised one byte at a time, with frequencies
quantised to ``2**scale_bits`` (at most 2**16). Several segments of symbols, each
with its own table, share one state: the encoder runs backwards over them so
that the decoder reads them forwards.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t

import numpy as np

cdef uint32_t RANS_L = 1u << 23

# Error codes (negative returns); the Python side turns them into messages.
cdef enum:
    E_END = -1      # the stream ends before the last symbol
    E_NO_CODE = -2  # a bit pattern that starts no code
    E_STATE = -3    # the rANS state is not a valid start or end state

ERR_END, ERR_NO_CODE, ERR_STATE = E_END, E_NO_CODE, E_STATE


def huffman_decode_canonical(const uint8_t[::1] data, int64_t n_bits,
                             const int64_t[::1] count, const int64_t[::1] symbols,
                             int64_t[::1] out):
    """Decode ``out.shape[0]`` symbols of a canonical code; return the bits used or an error.

    ``count[L]`` is the number of codes of length ``L`` (``count[0]`` unused) and
    ``symbols`` lists the coded symbols in canonical order (by length, then
    symbol). Bit-serial, as zlib's puff: the codes of one length are
    consecutive integers, so each length costs one comparison.
    """
    cdef Py_ssize_t i, n = out.shape[0]
    cdef int max_len = count.shape[0] - 1
    cdef int length
    cdef int64_t pos = 0, code, first, index, c
    cdef int64_t status = 0
    with nogil:
        for i in range(n):
            code = 0
            first = 0
            index = 0
            for length in range(1, max_len + 1):
                if pos >= n_bits:
                    status = E_END
                    break
                code |= (data[pos >> 3] >> (7 - (pos & 7))) & 1
                pos += 1
                c = count[length]
                if code - c < first:
                    out[i] = symbols[index + (code - first)]
                    break
                index += c
                first = (first + c) << 1
                code <<= 1
            else:
                status = E_NO_CODE
            if status < 0:
                break
    return status if status < 0 else pos


def rans_encode(const int64_t[::1] symbols, const int64_t[::1] seg_end,
                const int64_t[::1] seg_table, const uint32_t[::1] freq,
                const uint32_t[::1] cum, const int64_t[::1] table_offset,
                const int32_t[::1] scale_bits):
    """rANS-code ``symbols``; segment ``k`` ends at ``seg_end[k]`` and uses table ``seg_table[k]``.

    Table ``t`` is ``freq[table_offset[t] + s]`` / ``cum[...]`` for symbol ``s``
    (every coded symbol must have a non-zero frequency), quantised to
    ``2**scale_bits[t]``. Returns the coded bytes.
    """
    cdef Py_ssize_t n = symbols.shape[0]
    # At most 2 bytes per symbol (scale_bits <= 16) and 4 for the final state.
    buf = np.empty(2 * n + 4, dtype=np.uint8)
    cdef uint8_t[::1] out = buf
    cdef Py_ssize_t ptr = out.shape[0]
    cdef Py_ssize_t k, i, start
    cdef uint32_t x = RANS_L, f, x_max
    cdef int64_t t, off, s
    cdef int bits
    with nogil:
        for k in range(seg_end.shape[0] - 1, -1, -1):
            start = seg_end[k - 1] if k else 0
            t = seg_table[k]
            off = table_offset[t]
            bits = scale_bits[t]
            for i in range(seg_end[k] - 1, start - 1, -1):
                s = off + symbols[i]
                f = freq[s]
                x_max = ((RANS_L >> bits) << 8) * f
                while x >= x_max:
                    ptr -= 1
                    out[ptr] = x & 0xFF
                    x >>= 8
                x = ((x // f) << bits) + (x % f) + cum[s]
        for i in range(4):
            ptr -= 1
            out[ptr] = (x >> (8 * i)) & 0xFF
    return buf[ptr:].tobytes()


def rans_decode(const uint8_t[::1] data, const int64_t[::1] seg_end,
                const int64_t[::1] seg_table, const uint32_t[::1] freq,
                const uint32_t[::1] cum, const int64_t[::1] table_offset,
                const int32_t[::1] scale_bits, const int32_t[::1] lookup,
                const int64_t[::1] lookup_offset, int64_t[::1] out):
    """Decode what :func:`rans_encode` wrote; ``lookup`` maps each slot of a table to its symbol.

    Returns 0, or an error code: the bytes run out, are left over, or the
    final state is not the encoder's start state (a corrupted stream).
    """
    cdef Py_ssize_t n_bytes = data.shape[0]
    cdef Py_ssize_t p = 4, k, i, start
    cdef uint32_t x, mask, slot
    cdef int64_t t, off, s
    cdef int bits
    cdef int status = 0
    if n_bytes < 4:
        return E_END
    x = (<uint32_t>data[0] << 24) | (<uint32_t>data[1] << 16) | (<uint32_t>data[2] << 8) | data[3]
    if x < RANS_L:
        return E_STATE
    with nogil:
        for k in range(seg_end.shape[0]):
            start = seg_end[k - 1] if k else 0
            t = seg_table[k]
            off = table_offset[t]
            bits = scale_bits[t]
            mask = (1u << bits) - 1
            for i in range(start, seg_end[k]):
                slot = x & mask
                s = lookup[lookup_offset[t] + slot]
                out[i] = s
                s += off
                x = freq[s] * (x >> bits) + slot - cum[s]
                while x < RANS_L:
                    if p >= n_bytes:
                        status = E_END
                        break
                    x = (x << 8) | data[p]
                    p += 1
                if status < 0:
                    break
            if status < 0:
                break
    if status < 0:
        return status
    if x != RANS_L or p != n_bytes:
        return E_STATE
    return 0
