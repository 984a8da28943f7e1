"""Read the records of a W&B run file (``run-<id>.wandb``), offline runs included, without the W&B service.

wandb (0.31) writes each run as a LevelDB-style log: a 7-byte header (``:W&B``, magic ``0xBEE1``, version
0), then 32 KiB blocks of chunks, each ``crc32: u32 | length: u16 | type: u8 | data``, where ``crc32`` is
zlib's CRC over the type byte and the data, and a record too long for a block is split into FIRST,
MIDDLE..., LAST chunks. Every record is a ``wandb_internal_pb2.Record`` protobuf (run, config, history,
summary, exit, artifact, ...). The Python SDK no longer ships a reader, hence this one.

A run killed while writing ends in a partial chunk: reading stops there and returns what came before.
A checksum that does not match (a damaged file) is an error naming the file and the byte offset.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from translearn.errors import UserError

HEADER = struct.Struct("<4sHB")
IDENT, MAGIC, VERSION = b":W&B", 0xBEE1, 0
CHUNK = struct.Struct("<IHB")
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class WandbFileError(UserError, ValueError):
    """A file that is not a readable W&B run file; the message names it and the byte offset."""


def chunk_crc(kind: int, data: bytes) -> int:
    """The checksum a chunk header carries: zlib's CRC-32 of the type byte followed by the data."""
    return zlib.crc32(bytes([kind]) + data) & 0xFFFFFFFF


def iter_raw_records(path: str | Path) -> Iterator[bytes]:
    """Yield each record's bytes (a serialised protobuf) in file order."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < HEADER.size or HEADER.unpack_from(data) != (IDENT, MAGIC, VERSION):
        raise WandbFileError(f"{path}: not a W&B run file (expected the header ':W&B', magic 0xBEE1, version 0)",
                             file=path)
    pos, pending = HEADER.size, None  # pending: the FIRST/MIDDLE chunks of a split record
    while pos < len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK.size:  # a block's zero-filled trailer
            pos += left
            continue
        if pos + CHUNK.size > len(data):
            return  # killed mid-header
        crc, length, kind = CHUNK.unpack_from(data, pos)
        if crc == length == kind == 0:  # zero padding to the end of the block
            pos += left
            continue
        body = data[pos + CHUNK.size: pos + CHUNK.size + length]
        if len(body) < length:
            return  # killed mid-record
        if crc != chunk_crc(kind, body):
            raise WandbFileError(f"{path}: damaged record at byte {pos} (checksum mismatch)", file=path)
        if kind == FULL:
            yield body
        elif kind == FIRST:
            pending = body
        elif kind in (MIDDLE, LAST) and pending is not None:
            pending += body
            if kind == LAST:
                yield pending
                pending = None
        else:
            raise WandbFileError(f"{path}: unexpected chunk type {kind} at byte {pos}", file=path)
        pos += CHUNK.size + length


def iter_records(path: str | Path) -> Iterator[object]:
    """Yield each record of the file as a ``wandb.proto.wandb_internal_pb2.Record``."""
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2

    for raw in iter_raw_records(path):
        record = wandb_internal_pb2.Record()
        try:
            record.ParseFromString(raw)
        except DecodeError as err:
            raise WandbFileError(f"{path}: a record that is not a W&B protobuf ({err})", file=path) from err
        yield record
