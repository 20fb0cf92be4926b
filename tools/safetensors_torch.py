#!/usr/bin/python3
"""Minimal safetensors reader/writer for PyTorch tensors.

Uses only torch, numpy, json and struct (the `safetensors` pip package is not needed).
The format is the one mtrank reads and writes (include/mtrank/io/safetensors.hpp):

    u64 little-endian N | N bytes of JSON header (padded with spaces) | byte buffer

    header = {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
              "__metadata__": {"<key>": "<string>"}}

Library use:
    from safetensors_torch import save_file, load_file, read_metadata
    save_file({"fc.weight": torch.randn(4, 3)}, "model.safetensors", metadata={"k": "v"})
    tensors, metadata = load_file("model.safetensors")

Command line:
    tools/safetensors_torch.py show FILE      # names, dtypes, shapes, metadata
"""
import json
import os
import struct
import sys

import numpy as np
import torch

assert sys.byteorder == "little", "this tool assumes a little-endian host"

MAX_HEADER = 100_000_000

# torch dtype -> (safetensors name, same-size dtype whose .numpy() gives the raw bytes)
_TO_ST = {
    torch.float64: ("F64", torch.float64),
    torch.float32: ("F32", torch.float32),
    torch.float16: ("F16", torch.float16),
    torch.bfloat16: ("BF16", torch.int16),
    torch.int64: ("I64", torch.int64),
    torch.int32: ("I32", torch.int32),
    torch.int16: ("I16", torch.int16),
    torch.int8: ("I8", torch.int8),
    torch.uint8: ("U8", torch.uint8),
    torch.bool: ("BOOL", torch.uint8),
}
_FROM_ST = {name: dt for dt, (name, _) in _TO_ST.items()}
_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
          "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}


def _tensor_bytes(t):
    name, raw_dtype = _TO_ST.get(t.dtype, (None, None))
    if name is None:
        raise ValueError(f"dtype {t.dtype} is not supported")
    t = t.detach().cpu().contiguous()
    if raw_dtype != t.dtype:
        t = t.to(torch.uint8) if t.dtype == torch.bool else t.view(raw_dtype)
    return name, t.numpy().tobytes()


def serialize(tensors, metadata=None):
    """Returns the bytes of a safetensors file holding `tensors` (a dict name -> tensor) in order."""
    header, chunks, pos = {}, [], 0
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("metadata keys and values must be strings")
        header["__metadata__"] = dict(metadata)
    for name, t in tensors.items():
        if name == "__metadata__":
            raise ValueError("'__metadata__' cannot name a tensor")
        dtype, data = _tensor_bytes(t)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [pos, pos + len(data)]}
        chunks.append(data)
        pos += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def save_file(tensors, path, metadata=None):
    """Writes atomically (temporary file + fsync + rename)."""
    data = serialize(tensors, metadata)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _parse_header(buf, what):
    if len(buf) < 8:
        raise ValueError(f"{what}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > MAX_HEADER or 8 + n > len(buf):
        raise ValueError(f"{what}: header length {n} is out of range")

    def no_duplicates(pairs):
        d = {}
        for k, v in pairs:
            if k in d:
                raise ValueError(f"{what}: duplicate key {k!r}")
            d[k] = v
        return d

    header = json.loads(bytes(buf[8:8 + n]).decode("utf-8"), object_pairs_hook=no_duplicates)
    if not isinstance(header, dict):
        raise ValueError(f"{what}: header is not an object")
    metadata = header.pop("__metadata__", {}) or {}
    if not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{what}: metadata values must be strings")
    data_size = len(buf) - 8 - n
    spans = []
    for name, info in header.items():
        try:
            dtype, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{what}: tensor {name!r}: expected dtype, shape and data_offsets [begin, end]") from None
        if dtype not in _SIZES:
            raise ValueError(f"{what}: tensor {name!r}: unknown dtype {dtype}")
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError(f"{what}: tensor {name!r}: bad shape {shape}")
        if not (0 <= b <= e <= data_size) or e - b != int(np.prod(shape, dtype=np.int64)) * _SIZES[dtype]:
            raise ValueError(f"{what}: tensor {name!r}: bad data_offsets [{b}, {e}]")
        spans.append((b, e, name))
    pos = 0
    for b, e, name in sorted(spans):
        if b != pos:
            raise ValueError(f"{what}: tensor {name!r}: overlap or hole at byte {pos}")
        pos = e
    if pos != data_size:
        raise ValueError(f"{what}: {data_size - pos} trailing bytes belong to no tensor")
    return header, metadata, 8 + n


def load(buf, what="<bytes>"):
    """Parses safetensors bytes; returns (dict name -> tensor, metadata dict)."""
    header, metadata, start = _parse_header(buf, what)
    out = {}
    for name, info in header.items():
        dtype, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in _FROM_ST:
            raise ValueError(f"{what}: tensor {name!r}: dtype {dtype} has no torch equivalent here")
        tdt = _FROM_ST[dtype]
        if e == b:
            out[name] = torch.empty(shape, dtype=tdt)
        else:
            out[name] = torch.frombuffer(bytearray(buf[start + b:start + e]), dtype=tdt).reshape(shape).clone()
    return out, metadata


def load_file(path):
    with open(path, "rb") as f:
        return load(f.read(), path)


def read_metadata(path):
    with open(path, "rb") as f:
        buf = f.read()
    return _parse_header(buf, path)[1]


def main(argv):
    if len(argv) != 3 or argv[1] != "show":
        print(__doc__)
        return 2
    tensors, metadata = load_file(argv[2])
    for name, t in tensors.items():
        print(f"{name}\t{_TO_ST[t.dtype][0]}\t{list(t.shape)}")
    for k, v in metadata.items():
        print(f"__metadata__.{k}\t{v[:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
