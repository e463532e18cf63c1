"""``save(path)`` / ``load(path)`` for every object that holds data: one writer, one reader.

Files are ``.npz`` archives (a zip of ``.npy`` members) that record the class that
wrote them (``__kind__``) and a format version (``__version__``). A file is data
from outside, so the reader trusts nothing in it:

* it never unpickles (object arrays are refused) and never executes code;
* it checks the zip directory, the kind, the version and the exact set of members;
* before it allocates anything for a member it reads the member's ``.npy`` header
  and checks the dtype and shape against what the loader expects and against the
  member's real size in the archive, so a crafted header cannot make it allocate
  more than the file holds;
* any failure (not a zip, truncation, a flipped byte caught by the CRC, a wrong
  dtype, a missing or extra member, a value the class refuses) becomes one
  :class:`FileFormatError`, a ``ValueError`` that names the file.

Writers go through :func:`save_arrays`, which writes to exactly the path given (no
``.npz`` appended) by way of a temporary file and a rename, so a reader never
sees half a file.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any, TypeVar

import numpy as np
from numpy.lib import format as npy_format
from numpy.typing import ArrayLike, DTypeLike, NDArray

from dlkernels._lib.array_types import PathLike

__all__ = ["FORMAT_VERSION", "FileFormatError", "Archive", "save_arrays", "read_archive",
           "load_arrays"]

FORMAT_VERSION = 1
_RESERVED = ("__kind__", "__version__")
# Deflate cannot expand data more than about 1032 times: a member that claims
# more than that is lying about its size.
_DEFLATE_MAX_RATIO = 1032
# Errors that mean "this file is not what it should be" (OSError: a read failed
# half-way, e.g. a truncated deflate stream; RuntimeError: zipfile's word for a
# member whose local header says it is encrypted).
_FORMAT_ERRORS = (OSError, RuntimeError, ValueError, TypeError, IndexError, KeyError, EOFError, OverflowError,
                  NotImplementedError, UnicodeError, zipfile.BadZipFile, zlib.error,
                  struct.error, zipfile.LargeZipFile)
# The Python type :meth:`Archive.scalar` reads a member as.
_Scalar = TypeVar("_Scalar", bool, int, float, str)


class FileFormatError(ValueError):
    """A file that is not a valid dlkernels file of the expected kind.

    Attributes
    ----------
    path : str
        The file.
    reason : str
        What is wrong with it.
    """

    def __init__(self, path: object, reason: str) -> None:
        self.path: str = (str(os.fspath(path)) if isinstance(path, (str, os.PathLike))
                          else repr(path))
        self.reason: str = reason
        super().__init__(f"{self.path}: {reason}")


def save_arrays(path: PathLike, kind: str, *, version: int = FORMAT_VERSION,
                **arrays: ArrayLike) -> None:
    """Write ``arrays`` (numpy arrays or scalars) to ``path`` as an npz archive of ``kind``.

    The file appears at ``path`` exactly (no suffix is added) and only once
    complete: it is written next to it and renamed into place.
    """
    path = os.fspath(path)
    members = {"__kind__": np.array(kind), "__version__": np.array(version)}
    members.update({name: np.asarray(value) for name, value in arrays.items()})
    for name, value in members.items():
        if value.dtype.hasobject:
            raise TypeError(f"{name} is an object array; files hold numbers and strings only")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".dlkernels-", suffix=".npz.tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **members)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class Archive:
    """An open archive of one kind, read member by member with checked headers.

    Obtained from :func:`read_archive`; every method raises
    :class:`FileFormatError` on anything unexpected.
    """

    _source: str   # the file's path, for memory maps (set by read_archive)

    def __init__(self, path: object, zf: zipfile.ZipFile, file_bytes: int, kind: str) -> None:
        self.path: object = path
        self.kind: str = kind
        self.version: int = 0
        self._zip, self._file_bytes = zf, file_bytes
        self._infos: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if name in self._infos or not info.filename.endswith(".npy"):
                raise self.error(f"member {info.filename!r} is not a numpy array or repeats")
            self._infos[name] = info

    def error(self, reason: str) -> FileFormatError:
        """The error naming this file, to raise."""
        return FileFormatError(self.path, reason)

    @property
    def members(self) -> set[str]:
        """Names of the data members (without ``__kind__`` and ``__version__``)."""
        return set(self._infos) - set(_RESERVED)

    def expect(self, required: Collection[str], optional: Collection[str] = ()) -> None:
        """Refuse the archive unless its members are ``required`` plus any of ``optional``."""
        required, optional = set(required), set(optional)
        missing = required - self.members
        extra = self.members - required - optional
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"lacks {', '.join(sorted(missing))}")
            if extra:
                parts.append(f"has unexpected {', '.join(sorted(extra))}")
            raise self.error(f"a {self.kind} file that {' and '.join(parts)}")

    def header(self, name: str) -> tuple[np.dtype[Any], tuple[int, ...]]:
        """The dtype and shape of member ``name``, from its header, checked against its size."""
        info = self._info(name)
        with self._zip.open(info) as stream:
            return self._read_header(name, info, stream)[:2]

    def array(self, name: str, dtype: DTypeLike | tuple[DTypeLike, ...], shape: tuple[int | None, ...] | None = None) -> NDArray[Any]:
        """Member ``name`` as an array, after checking its header.

        ``dtype`` is one dtype or a tuple of the allowed ones (compared exactly,
        byte order aside); ``shape`` is ``None`` (any), or a tuple whose entries are
        ints or ``None`` (any length on that axis).
        """
        info = self._info(name)
        with self._zip.open(info) as stream:
            found, found_shape, fortran, nbytes = self._read_header(name, info, stream)
            self._check_spec(name, found, found_shape, dtype, shape)
            arr = np.empty(found_shape, dtype=found, order="F" if fortran else "C")
            view = memoryview(arr.reshape(-1, order="A")).cast("B")
            filled = 0
            while filled < nbytes:  # the CRC is checked once the member is read to its end
                got = stream.readinto(view[filled:])
                if not got:
                    raise self.error(f"{name} is truncated")
                filled += got
            if stream.read(1):
                raise self.error(f"{name} is longer than its header says")
        return arr.astype(found.newbyteorder("="), order="C", copy=False)

    def mapped(self, name: str, dtype: DTypeLike | tuple[DTypeLike, ...], shape: tuple[int | None, ...] | None = None) -> NDArray[Any]:
        """Member ``name`` as a read-only array mapped from the file, after the same checks.

        Only members stored uncompressed (as :func:`save_arrays` writes them) can
        be mapped. The member is read through once so that its CRC is checked;
        nothing is allocated for it. The file must not change while the array
        is in use.
        """
        info = self._info(name)
        if info.compress_type != zipfile.ZIP_STORED:
            raise self.error(f"{name} is compressed and cannot be memory-mapped")
        with self._zip.open(info) as stream:
            found, found_shape, fortran, nbytes = self._read_header(name, info, stream)
            self._check_spec(name, found, found_shape, dtype, shape)
            start = stream.tell()
            while stream.read(1 << 24):   # zipfile checks the CRC at the end
                pass
        if nbytes == 0:
            arr = np.empty(found_shape, dtype=found)
        else:
            self._zip.fp.seek(info.header_offset)
            local = self._zip.fp.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                raise self.error(f"{name} has a damaged local header")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            offset = info.header_offset + 30 + name_len + extra_len + start
            if offset + nbytes > self._file_bytes:
                raise self.error(f"{name} runs past the end of the file")
            arr = np.asarray(np.memmap(self._source, dtype=found, mode="r", offset=offset,
                                       shape=found_shape, order="F" if fortran else "C"))
        arr.flags.writeable = False
        if found.isnative:
            return arr
        return arr.astype(found.newbyteorder("="), order="C")

    def _check_spec(self, name: str, found: np.dtype[Any], found_shape: tuple[int, ...],
                    dtype: DTypeLike | tuple[DTypeLike, ...], shape: tuple[int | None, ...] | None) -> None:
        allowed = tuple(np.dtype(t) for t in (dtype if isinstance(dtype, tuple) else (dtype,)))
        if found.newbyteorder("=") not in allowed and found not in allowed:
            names = " or ".join(t.name for t in allowed)
            raise self.error(f"{name} has dtype {found}, expected {names}")
        if shape is not None and (len(found_shape) != len(shape) or any(
                want is not None and want != got for want, got in zip(shape, found_shape))):
            want = tuple("any" if s is None else s for s in shape)
            raise self.error(f"{name} has shape {found_shape}, expected {want}")

    def scalar(self, name: str, kind: type[_Scalar], *, low: float | None = None,
               high: float | None = None) -> _Scalar:
        """Member ``name`` as one Python ``bool``, ``int``, ``float`` or ``str``.

        The stored dtype must be of that kind (a string is never read as a bool,
        a float never as an int); ``low`` and ``high`` bound a number, inclusive.
        """
        if kind is str:
            found = self.header(name)[0]
            if found.kind != "U" or found.itemsize > 4 * 4096:
                raise self.error(f"{name} has dtype {found}, expected a short string")
            return str(self.array(name, found, ())[()])
        dtypes = {bool: (np.bool_,),
                  int: (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
                        np.uint64),
                  float: (np.float16, np.float32, np.float64)}
        arr = self.array(name, dtypes[kind], ())
        value = kind(arr[()])
        if kind is float and not np.isfinite(value):
            raise self.error(f"{name} is {value}, expected a finite number")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.error(f"{name} is {value}, expected a value in [{low}, {high}]")
        return value

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = self._infos.get(name)
        if info is None:
            raise self.error(f"a {self.kind} file without {name}")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) \
                or info.flag_bits & 0x1:
            raise self.error(f"{name} is encrypted or uses an unsupported compression")
        ratio = 1 if info.compress_type == zipfile.ZIP_STORED else _DEFLATE_MAX_RATIO
        if info.compress_size > self._file_bytes or \
                info.file_size > ratio * info.compress_size + 1024:
            raise self.error(f"{name} claims {info.file_size} bytes from "
                             f"{info.compress_size} stored ones")
        return info

    def _read_header(self, name: str, info: zipfile.ZipInfo, stream: IO[bytes]
                     ) -> tuple[np.dtype[Any], tuple[int, ...], bool, int]:
        version = npy_format.read_magic(stream)
        if version not in ((1, 0), (2, 0)):
            raise self.error(f"{name} has an unknown .npy version {version}")
        reader = npy_format.read_array_header_1_0 if version == (1, 0) \
            else npy_format.read_array_header_2_0
        shape, fortran, dtype = reader(stream)
        if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
            raise self.error(f"{name} has dtype {dtype}: files hold plain numbers and strings")
        if any(not isinstance(s, int) or s < 0 for s in shape):
            raise self.error(f"{name} has an invalid shape {shape}")
        count = 1
        for s in shape:
            count *= s
        nbytes = count * dtype.itemsize
        if stream.tell() + nbytes != info.file_size:
            raise self.error(f"{name} declares {shape} {dtype} ({nbytes} bytes), but the "
                             f"archive holds {info.file_size - stream.tell()}")
        return dtype, shape, fortran, nbytes


@contextmanager
def read_archive(path: PathLike, kind: str,
                 versions: Collection[int] = (FORMAT_VERSION,)) -> Iterator[Archive]:
    """Open ``path`` as an archive of ``kind``; any failure inside is a :class:`FileFormatError`.

    Use as ``with read_archive(path, "KDTree") as archive: ...``: the block reads
    members with :meth:`Archive.array` / :meth:`Archive.scalar` and validates
    them; a ValueError (or any error of a bad file) raised in it is re-raised as
    a FileFormatError naming the file, with the original as its cause.
    """
    shown = path if isinstance(path, (str, os.PathLike)) else repr(path)
    raw = open(os.fspath(path), "rb")  # opening errors (no such file...) stay as they are
    try:
        with raw, zipfile.ZipFile(raw) as zf:
            archive = Archive(shown, zf, os.fstat(raw.fileno()).st_size, kind)
            archive._source = os.fspath(path)
            if "__kind__" not in archive._infos:
                raise archive.error(f"a foreign archive, not a {kind} file")
            found = archive.scalar("__kind__", str)
            if found != kind:
                raise archive.error(f"a {found} file, not a {kind} file")
            archive.version = archive.scalar("__version__", int)
            if archive.version > max(versions):
                raise archive.error(f"written by a newer dlkernels (format {archive.version}); "
                                    f"this one reads format {max(versions)}")
            if archive.version not in versions:
                raise archive.error(f"format {archive.version} is not one this version reads")
            yield archive
    except FileFormatError:
        raise
    except _FORMAT_ERRORS as exc:
        raise FileFormatError(shown, f"not a valid {kind} file: {exc}") from exc


def load_arrays(path: PathLike, kind: str, members: Mapping[str, tuple[Any, ...]],
                optional: Mapping[str, tuple[Any, ...]] | None = None) -> dict[str, NDArray[Any]]:
    """Read a fixed-layout archive: ``members`` maps each name to ``(dtype, shape)``.

    For formats whose layout depends on their own header, use :func:`read_archive`.
    """
    optional = optional or {}
    with read_archive(path, kind) as archive:
        archive.expect(members, optional)
        specs = {**members, **{k: v for k, v in optional.items() if k in archive.members}}
        return {name: archive.array(name, *spec) for name, spec in specs.items()}
