"""A small protocol-buffers wire-format decoder driven by field schemas.

A schema maps field numbers to `(name, kind, repeated)`, kind being one of "int" (signed
varint: int32, int64, enum), "uint" (uint64 varint), "float" (fixed32), "double" (fixed64),
"bytes", "string", or a nested schema dict. `parse(buf, schema)` returns a dict of the fields
present; repeated numeric fields (packed or not, mixed in any order) become numpy arrays,
other repeated fields lists. Unknown fields are checked and skipped.

Every malformed input raises `ModelError` with the byte offset: truncated varints, lengths
running past the end of their message, wire types that disagree with the schema, groups,
invalid UTF-8, nesting deeper than MAX_DEPTH. Lengths are always checked against the bytes
actually present before anything is sliced or allocated.
"""
from __future__ import annotations

import struct
from typing import Any, Dict, Iterator, Tuple

import numpy as np

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
MAX_DEPTH = 64
_U64 = (1 << 64) - 1


class ModelError(ValueError):
    """The model file is malformed, truncated, unsafe or uses something this runtime lacks."""


def read_varint(buf: bytes, pos: int, end: int) -> Tuple[int, int]:
    """Decode one varint at buf[pos:end] -> (unsigned 64-bit value, position after it)."""
    result = shift = 0
    start = pos
    while True:
        if pos >= end:
            raise ModelError(f"truncated varint at byte {start}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & _U64, pos
        shift += 7
        if shift >= 70:
            raise ModelError(f"varint longer than 10 bytes at byte {start}")


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def iter_fields(buf: bytes, start: int, end: int) -> Iterator[Tuple[int, int, Any]]:
    """Yield (field number, wire type, value): an int for varints, (start, stop) otherwise."""
    pos = start
    while pos < end:
        at = pos
        key, pos = read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ModelError(f"field number 0 at byte {at}")
        if wire == VARINT:
            value, pos = read_varint(buf, pos, end)
        elif wire == LEN:
            size, pos = read_varint(buf, pos, end)
            if size > end - pos:
                raise ModelError(f"field {number} at byte {at}: length {size} runs past the end "
                                 f"of its message ({end - pos} bytes left)")
            value = (pos, pos + size)
            pos += size
        elif wire in (FIXED64, FIXED32):
            width = 8 if wire == FIXED64 else 4
            if width > end - pos:
                raise ModelError(f"field {number} at byte {at}: truncated fixed{width * 8} value")
            value = (pos, pos + width)
            pos += width
        else:
            raise ModelError(f"field {number} at byte {at}: unsupported wire type {wire}")
        yield number, wire, value


def decode_packed_varints(buf: bytes, start: int, end: int) -> np.ndarray:
    """All varints in buf[start:end] as uint64, vectorised (packed repeated fields)."""
    raw = np.frombuffer(buf, np.uint8, end - start, start)
    if raw.size == 0:
        return np.zeros(0, np.uint64)
    if raw[-1] & 0x80:
        raise ModelError(f"truncated packed varint ending at byte {end}")
    stops = np.flatnonzero(raw < 0x80)                    # last byte of each varint
    starts = np.concatenate(([0], stops[:-1] + 1))
    lengths = stops - starts + 1
    if lengths.max() > 10:
        raise ModelError(f"varint longer than 10 bytes in packed field at byte {start}")
    position = np.arange(raw.size) - np.repeat(starts, lengths)
    parts = (raw & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
    return np.bitwise_or.reduceat(parts, starts)


_SCALAR_WIRE = {"int": VARINT, "uint": VARINT, "float": FIXED32, "double": FIXED64}
_NUMPY = {"int": np.int64, "uint": np.uint64, "float": np.dtype("<f4"), "double": np.dtype("<f8")}


def _packed_piece(buf: bytes, kind: str, value) -> np.ndarray:
    """One packed run of a repeated numeric field as an array."""
    start, stop = value
    if kind in ("int", "uint"):
        out = decode_packed_varints(buf, start, stop)
        return out.view(np.int64) if kind == "int" else out
    width = 4 if kind == "float" else 8
    if (stop - start) % width:
        raise ModelError(f"packed {kind} field at byte {start}: {stop - start} bytes is not a "
                         f"multiple of {width}")
    return np.frombuffer(buf, _NUMPY[kind], (stop - start) // width, start)


def _scalar(buf: bytes, kind: str, value):
    if kind == "int":
        return _signed(value)
    if kind == "uint":
        return value
    if kind == "float":
        return struct.unpack_from("<f", buf, value[0])[0]
    return struct.unpack_from("<d", buf, value[0])[0]


def parse(buf: bytes, schema: Dict[int, tuple], start: int = 0, end: int = None,
          depth: int = 0) -> Dict[str, Any]:
    """Decode the message in buf[start:end] with `schema` (see the module docstring)."""
    if depth > MAX_DEPTH:
        raise ModelError(f"messages nested deeper than {MAX_DEPTH} at byte {start}")
    end = len(buf) if end is None else end
    out: Dict[str, Any] = {}
    pieces: Dict[str, tuple] = {}                      # name -> (kind, arrays and runs of values)
    for number, wire, value in iter_fields(buf, start, end):
        spec = schema.get(number)
        if spec is None:
            continue                                      # unknown field: already bounds-checked
        name, kind, repeated = spec
        if isinstance(kind, dict) or kind in ("bytes", "string"):
            if wire != LEN:
                raise ModelError(f"field {name!r} (#{number}): wire type {wire}, expected {LEN}")
            s, e = value
            if isinstance(kind, dict):
                item = parse(buf, kind, s, e, depth + 1)
            elif kind == "bytes":
                item = bytes(buf[s:e])
            else:
                try:
                    item = bytes(buf[s:e]).decode("utf-8")
                except UnicodeDecodeError:
                    raise ModelError(f"field {name!r} at byte {s}: invalid UTF-8") from None
            if repeated:
                out.setdefault(name, []).append(item)
            else:
                out[name] = item
            continue
        expected = _SCALAR_WIRE[kind]
        if wire != expected and not (repeated and wire == LEN):
            raise ModelError(f"field {name!r} (#{number}): wire type {wire}, expected {expected}")
        if repeated:
            parts = pieces.setdefault(name, (kind, []))[1]
            if wire == LEN:
                parts.append(_packed_piece(buf, kind, value))
            elif parts and isinstance(parts[-1], list):   # unpacked values: one array per run,
                parts[-1].append(_scalar(buf, kind, value))   # not one per value (165x the file)
            else:
                parts.append([_scalar(buf, kind, value)])
        else:
            out[name] = _scalar(buf, kind, value)
    for name, (kind, parts) in pieces.items():
        arrays = [np.array(part, dtype=np.uint64 if kind == "uint" else _NUMPY[kind])
                  if isinstance(part, list) else part for part in parts]
        out[name] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    return out
