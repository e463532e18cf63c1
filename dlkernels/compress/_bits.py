"""Bit- and byte-level writing and reading for the ``.fdlz`` format.

Small fields (the header, tables) are bit-packed, most significant bit first;
unsigned numbers of unknown size use Elias' gamma code of ``value + 1``
(``2 * floor(log2(value + 1)) + 1`` bits). Large payloads are byte strings
appended whole. Readers raise :class:`Corrupt` on anything out of place and
never read past the buffer.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Corrupt", "BitWriter", "BitReader", "ByteReader", "varint"]


class Corrupt(ValueError):
    """The bytes are not a valid file (turned into FileFormatError with the file's name)."""


class BitWriter:
    """Collects bits; :meth:`getvalue` pads the last byte with zeros."""

    def __init__(self):
        self._acc = 0
        self._n = 0
        self._chunks: list[np.ndarray] = []

    def bits(self, value: int, width: int) -> None:
        if width:
            if not 0 <= value < (1 << width):
                raise ValueError(f"{value} does not fit in {width} bits")
            self._acc = (self._acc << width) | value
            self._n += width
            if self._n > 4096:
                self._spill()

    def flag(self, value: bool) -> None:
        self.bits(int(bool(value)), 1)

    def uint(self, value: int) -> None:
        """Elias gamma of ``value + 1``."""
        value = int(value) + 1
        n = value.bit_length()
        self.bits(0, n - 1)
        self.bits(value, n)

    def array(self, values: np.ndarray, width: int) -> None:
        """Unsigned ints, each in ``width`` bits."""
        values = np.asarray(values, dtype=np.uint64)
        if width == 0 or values.size == 0:
            return
        if int(values.max()) >> width:
            raise ValueError(f"a value does not fit in {width} bits")
        self._spill()
        shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
        self._chunks.append(((values[:, None] >> shifts) & np.uint64(1)).astype(np.uint8).reshape(-1))

    def _spill(self) -> None:
        if self._n:
            text = np.frombuffer(format(self._acc, f"0{self._n}b").encode(), dtype=np.uint8)
            self._chunks.append(text - ord("0"))
            self._acc, self._n = 0, 0

    @property
    def n_bits(self) -> int:
        return self._n + sum(c.size for c in self._chunks)

    def getvalue(self) -> bytes:
        self._spill()
        if not self._chunks:
            return b""
        return np.packbits(np.concatenate(self._chunks)).tobytes()


class BitReader:
    """Reads what a :class:`BitWriter` wrote; every read is bounds-checked."""

    def __init__(self, data: bytes):
        self._bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
        self._pos = 0

    @property
    def remaining(self) -> int:
        return self._bits.size - self._pos

    def bits(self, width: int) -> int:
        if width > self.remaining:
            raise Corrupt("a field runs past the end of its block")
        value = 0
        for b in self._bits[self._pos:self._pos + width].tolist():
            value = (value << 1) | b
        self._pos += width
        return value

    def flag(self) -> bool:
        return bool(self.bits(1))

    def uint(self, limit: int = 1 << 62) -> int:
        """An Elias-gamma number; above ``limit`` it is refused."""
        zeros = 0
        while True:
            if self._pos >= self._bits.size:
                raise Corrupt("a number runs past the end of its block")
            if self._bits[self._pos]:
                break
            zeros += 1
            self._pos += 1
            if zeros > 62:
                raise Corrupt("a number has more than 62 bits")
        value = self.bits(zeros + 1) - 1
        if value > limit:
            raise Corrupt(f"a count of {value} is above its limit of {limit}")
        return value

    def array(self, count: int, width: int) -> np.ndarray:
        if count and width:
            if count * width > self.remaining:
                raise Corrupt("a table runs past the end of its block")
            chunk = self._bits[self._pos:self._pos + count * width].reshape(count, width)
            self._pos += count * width
            return chunk.astype(np.int64) @ (np.int64(1) << np.arange(width - 1, -1, -1, dtype=np.int64))
        return np.zeros(count, dtype=np.int64)

    def finish(self) -> None:
        """Only zero padding (fewer than 8 bits) may be left."""
        if self.remaining >= 8 or self._bits[self._pos:].any():
            raise Corrupt("a block has data after its last field")


def varint(value: int) -> bytes:
    """LEB128: 7 bits a byte, low bits first."""
    out = bytearray()
    value = int(value)
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class ByteReader:
    """Sequential reads from a byte string, each checked against its end."""

    def __init__(self, data: bytes, start: int = 0, stop: int | None = None):
        self._data = data
        self.pos = start
        self.stop = len(data) if stop is None else stop

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.stop - self.pos:
            raise Corrupt(f"a section of {n} bytes runs past the end of the file")
        chunk = self._data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def varint(self, limit: int = 1 << 62) -> int:
        value, shift = 0, 0
        while True:
            (byte,) = self.take(1)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 63:
                raise Corrupt("a length has more than 63 bits")
        if value > limit:
            raise Corrupt(f"a length of {value} is above its limit of {limit}")
        return value
