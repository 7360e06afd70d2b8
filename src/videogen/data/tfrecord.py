"""TFRecord files and ``tf.train.Example`` messages, read and written without TensorFlow.

A TFRecord file is a sequence of records, each::

    uint64 length (little endian) | uint32 masked crc32c(length) | data | uint32 masked crc32c(data)

with ``masked(c) = ((c >> 15) | (c << 17)) + 0xA282EAD8`` (mod 2^32). The data of a video
dataset record is a serialized ``tf.train.Example``::

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }  // entry: { string key = 1; Feature value = 2; }
    Feature  { oneof { BytesList bytes_list = 1; FloatList float_list = 2;
                       Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1 [packed]; }
    Int64List { repeated int64 value = 1 [packed]; }

Only the protobuf wire format is needed to read these: varints and length-delimited fields.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from videogen.io import VideoError

Feature = list[bytes] | np.ndarray | list[int]


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)  # Castagnoli, reflected
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``; pure Python, about 10 MB/s."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --------------------------------------------------------------------------- framing


def index_records(path: str | Path) -> tuple[list[tuple[int, int]], str | None]:
    """``[(offset of data, length), ...]`` of every whole record, and why the scan stopped
    early (a truncated or corrupt record) or None. Reads only the 12-byte headers."""
    path = Path(path)
    records: list[tuple[int, int]] = []
    size = path.stat().st_size
    with open(path, "rb") as f:
        offset = 0
        while offset < size:
            header = f.read(12)
            if len(header) < 12:
                return records, f"truncated header at byte {offset}"
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc(header[:8]) != length_crc:
                return records, f"corrupt record header at byte {offset} (length crc mismatch)"
            end = offset + 12 + length + 4
            if end > size:
                return records, f"truncated record at byte {offset} ({length} bytes announced)"
            records.append((offset + 12, length))
            offset = end
            f.seek(offset)
    return records, None


def read_record(f, offset: int, length: int, verify: bool = False, name: str = "") -> bytes:
    """The data of one record from an open binary file; ``verify`` checks its crc32c."""
    f.seek(offset)
    data = f.read(length + 4)
    if len(data) < length + 4:
        raise VideoError(f"{name}: record at byte {offset} is truncated")
    if verify and struct.unpack("<I", data[length:])[0] != masked_crc(data[:length]):
        raise VideoError(f"{name}: record at byte {offset} is corrupt (data crc mismatch)")
    return data[:length]


def iter_records(path: str | Path, verify: bool = False) -> Iterator[bytes]:
    """Every record's data in a TFRecord file; raises ``VideoError`` at a damaged record."""
    records, problem = index_records(path)
    with open(path, "rb") as f:
        for offset, length in records:
            yield read_record(f, offset, length, verify, str(path))
    if problem:
        raise VideoError(f"{path}: {problem}")


def write_records(path: str | Path, records: Iterable[bytes]) -> None:
    """Write records with their length and data checksums (a file TensorFlow can read)."""
    with open(path, "wb") as f:
        for data in records:
            length = struct.pack("<Q", len(data))
            f.write(length + struct.pack("<I", masked_crc(length)))
            f.write(data + struct.pack("<I", masked_crc(data)))


# --------------------------------------------------------------------------- protobuf


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of each field of a message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated length-delimited field")
            value, pos = buf[pos : pos + length], pos + length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = buf[pos : pos + width], pos + width
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _feature(buf: memoryview) -> Feature:
    for kind, _, values in _fields(buf):
        if kind == 1:  # BytesList
            return [bytes(v) for n, _, v in _fields(values) if n == 1]
        if kind == 2:  # FloatList: packed floats, or one fixed32 per value
            floats = [
                np.frombuffer(v, "<f4") if w == 2 else np.frombuffer(v, "<f4", count=1)
                for n, w, v in _fields(values)
                if n == 1
            ]
            return np.concatenate(floats) if floats else np.zeros(0, np.float32)
        if kind == 3:  # Int64List: packed varints, or one varint per value
            ints: list[int] = []
            for n, w, v in _fields(values):
                if n != 1:
                    continue
                if w == 0:
                    ints.append(_signed(v))
                else:
                    pos = 0
                    while pos < len(v):
                        x, pos = _varint(v, pos)
                        ints.append(_signed(x))
            return ints
    return []


def parse_example(data: bytes) -> dict[str, Feature]:
    """A serialized ``tf.train.Example`` as ``{key: list of bytes | float32 array | ints}``."""
    features: dict[str, Feature] = {}
    for number, wire, value in _fields(memoryview(data)):
        if number != 1 or wire != 2:
            continue
        for entry_number, entry_wire, entry in _fields(value):
            if entry_number != 1 or entry_wire != 2:
                continue
            key, feature = "", memoryview(b"")
            for n, _, v in _fields(entry):
                if n == 1:
                    key = bytes(v).decode("utf-8")
                elif n == 2:
                    feature = v
            features[key] = _feature(feature)
    return features


def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def encode_example(features: dict[str, bytes | list[bytes] | list[float] | list[int]]) -> bytes:
    """Serialize ``{key: bytes | list of bytes | floats | ints}`` as a ``tf.train.Example``.

    A float array or list of Python floats becomes a FloatList, ints an Int64List.
    """
    entries = b""
    for key, value in features.items():
        if isinstance(value, (bytes, bytearray)):
            value = [bytes(value)]
        items = list(value)
        if items and isinstance(items[0], (bytes, bytearray)):
            kind = _delimited(1, b"".join(_delimited(1, bytes(v)) for v in items))
        elif items and all(isinstance(v, (int, np.integer)) for v in items):
            kind = _delimited(3, _delimited(1, b"".join(_encode_varint(int(v)) for v in items)))
        else:
            packed = np.asarray(items, dtype="<f4").tobytes()
            kind = _delimited(2, _delimited(1, packed))
        entry = _delimited(1, key.encode("utf-8")) + _delimited(2, kind)
        entries += _delimited(1, entry)
    return _delimited(1, entries)
