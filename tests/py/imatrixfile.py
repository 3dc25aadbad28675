"""Writers of llama.cpp's importance-matrix files, for tests and the bench:
the GGUF layout llama-imatrix writes (NAME.in_sum2 F32 [n_in, n_mat],
NAME.counts F32 [1, n_mat], with general.type "imatrix" and the
imatrix.* keys) and its legacy .dat layout. Written from the format's
description (ggml's gguf.h, llama.cpp's imatrix tool), with struct only, so
that the tests need no extra package."""
import struct

GGUF_ALIGN = 32
KV_U32, KV_STR, KV_ARRAY = 4, 8, 9


def _str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_bytes(entries, chunk_count=1, chunk_size=512, datasets=("calibration.txt",),
               extra_tensors=()):
    """entries: {llama.cpp name: (in_sum2 rows as lists of floats, counts per row)}.
    extra_tensors: (name, [floats]) F32 1-D tensors to add as they are."""
    tensors = []  # (name, ne, floats)
    for name, (rows, counts) in entries.items():
        n_in = len(rows[0])
        assert all(len(r) == n_in for r in rows) and len(counts) == len(rows)
        tensors.append((name + ".in_sum2", (n_in, len(rows)), [v for r in rows for v in r]))
        tensors.append((name + ".counts", (1, len(rows)), list(counts)))
    for name, vals in extra_tensors:
        tensors.append((name, (len(vals),), list(vals)))
    kv = [("general.type", KV_STR, _str("imatrix")),
          ("imatrix.datasets", KV_ARRAY,
           struct.pack("<IQ", KV_STR, len(datasets)) + b"".join(_str(d) for d in datasets)),
          ("imatrix.chunk_count", KV_U32, struct.pack("<I", chunk_count)),
          ("imatrix.chunk_size", KV_U32, struct.pack("<I", chunk_size))]
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)))
    for key, t, val in kv:
        out += _str(key) + struct.pack("<I", t) + val
    data = bytearray()
    for name, ne, vals in tensors:
        while len(data) % GGUF_ALIGN:
            data += b"\0"
        out += _str(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne)
        out += struct.pack("<IQ", 0, len(data))
        data += struct.pack("<%df" % len(vals), *vals)
    while len(out) % GGUF_ALIGN:
        out += b"\0"
    return bytes(out + data)


def dat_bytes(entries, last_call=1, dataset="calibration.txt"):
    """entries: {llama.cpp name: (ncall, values)}, values the mean squares
    times ncall, as llama-imatrix's legacy writer stores them."""
    out = bytearray(struct.pack("<i", len(entries)))
    for name, (ncall, vals) in entries.items():
        b = name.encode()
        out += struct.pack("<i", len(b)) + b + struct.pack("<ii", ncall, len(vals))
        out += struct.pack("<%df" % len(vals), *vals)
    d = dataset.encode()
    out += struct.pack("<ii", last_call, len(d)) + d
    return bytes(out)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
