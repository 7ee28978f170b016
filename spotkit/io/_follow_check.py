"""Is a frame file completely written? Byte-level checks of CBF, EDF and TIFF files.

A detector (or a copy) writes a frame file in pieces; a reader that opens it too early may
get a short or zero-padded image with no error. Each check reads only the file's header and
compares the file's size with the number of bytes the header announces:

* **CBF** (Pilatus, Eiger): ``X-Binary-Size`` bytes after the binary section's start
  marker ``0C 1A 04 D5``, then the MIME boundary that closes the binary section and the
  ``;`` ending its text field.
* **EDF** (ESRF): the ``{...}`` header (closed by ``}`` and a newline) followed by ``Size``
  bytes (else ``Dim_1 * Dim_2`` times the ``DataType``'s size).
* **TIFF** (classic and BigTIFF, either byte order): the first image's directory and every
  value it points to (tags stored out of line, each strip or tile) end within the file.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

__all__ = ["file_complete"]

_CBF_START = b"\x0c\x1a\x04\xd5"
_CBF_END = re.compile(rb"--CIF-BINARY-FORMAT-SECTION----\r?\n;")
_CBF_SIZE = re.compile(rb"X-Binary-Size:\s*(\d+)")
_EDF_SIZES = {"unsignedbyte": 1, "signedbyte": 1, "unsignedshort": 2, "signedshort": 2,
              "unsignedinteger": 4, "signedinteger": 4, "unsignedlong": 4, "signedlong": 4,
              "unsigned64": 8, "signed64": 8, "floatvalue": 4, "float": 4, "real": 4,
              "doublevalue": 8, "double": 8}
_HEAD = 65536
#: bytes per value of each TIFF field type (BYTE, ASCII, SHORT, LONG, RATIONAL, SBYTE,
#: UNDEFINED, SSHORT, SLONG, SRATIONAL, FLOAT, DOUBLE, IFD, LONG8, SLONG8, IFD8)
_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4,
                    12: 8, 13: 4, 16: 8, 17: 8, 18: 8}


def _cbf(path: Path, head: bytes, size: int) -> bool:
    start = head.find(_CBF_START)
    m = _CBF_SIZE.search(head, 0, start if start >= 0 else len(head))
    if start < 0 or m is None:
        return False
    end = start + 4 + int(m.group(1))
    if size < end:
        return False
    # the MIME boundary closing the binary section, then ";" (after padding: Pilatus 4095)
    if end + 8192 <= len(head) or len(head) == size:  # a small file: all read already
        return _CBF_END.search(head, end, end + 8192) is not None
    with open(path, "rb") as fh:
        fh.seek(end)
        return _CBF_END.search(fh.read(8192)) is not None


def _edf(head: bytes, size: int) -> bool:
    if not head.lstrip()[:1] == b"{":
        return False
    close = head.find(b"}\n")
    if close < 0:
        return False
    fields: dict[str, str] = {}
    for line in head[:close].decode("latin-1").split(";"):
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip("{} \n\r\t").lower()] = value.strip()
    if "size" in fields:
        need = int(fields["size"])
    else:
        try:
            item = _EDF_SIZES[fields.get("datatype", "").lower()]
            need = int(fields["dim_1"]) * int(fields.get("dim_2", 1)) * item
        except (KeyError, ValueError):
            return False
    return size >= close + 2 + need


def _tiff(fh, size: int) -> bool:
    fh.seek(0)
    head = fh.read(16)
    if head[:2] == b"II":
        order = "<"
    elif head[:2] == b"MM":
        order = ">"
    else:
        return False
    (version,) = struct.unpack(order + "H", head[2:4])
    if version == 42:
        (ifd,) = struct.unpack(order + "I", head[4:8])
        count_fmt, entry_size, off_fmt = "H", 12, "I"
    elif version == 43:
        (ifd,) = struct.unpack(order + "Q", head[8:16])
        count_fmt, entry_size, off_fmt = "Q", 20, "Q"
    else:
        return False
    count_size = struct.calcsize(count_fmt)
    if ifd == 0 or ifd + count_size > size:
        return False
    fh.seek(ifd)
    (n,) = struct.unpack(order + count_fmt, fh.read(count_size))
    table = fh.read(n * entry_size)
    if len(table) < n * entry_size:
        return False
    inline = struct.calcsize(off_fmt)
    if ifd + count_size + n * entry_size + inline > size:  # the next-IFD offset
        return False
    type_fmt = {3: "H", 4: "I", 16: "Q"}
    tags: dict[int, list[int]] = {}
    for i in range(n):
        entry = table[i * entry_size:(i + 1) * entry_size]
        tag, typ = struct.unpack(order + "HH", entry[:4])
        (cnt,) = struct.unpack(order + off_fmt, entry[4:4 + inline])
        nbytes = cnt * _TIFF_TYPE_SIZES.get(typ, 1)
        if nbytes > inline:  # a value stored elsewhere in the file: it must be there
            (where,) = struct.unpack(order + off_fmt, entry[4 + inline:4 + 2 * inline])
            if where + nbytes > size:
                return False
        if tag not in (273, 279, 324, 325):  # strip/tile offsets and byte counts
            continue
        if typ not in type_fmt:
            return False
        fmt = order + type_fmt[typ] * cnt
        nbytes = struct.calcsize(fmt)
        raw = entry[4 + inline:4 + 2 * inline]
        if nbytes > inline:
            (where,) = struct.unpack(order + off_fmt, raw)
            fh.seek(where)
            raw = fh.read(nbytes)
        tags[tag] = list(struct.unpack(fmt, raw[:nbytes]))
    offsets = tags.get(273) or tags.get(324)
    counts = tags.get(279) or tags.get(325)
    if not offsets or not counts or len(offsets) != len(counts):
        return False
    return all(o > 0 and o + c <= size for o, c in zip(offsets, counts, strict=True))


def file_complete(path: str | os.PathLike[str]) -> bool:
    """True when a CBF/EDF/TIFF frame file holds every byte its header announces.

    Never raises: a file that vanished, cannot be read, or whose header is cut short is not
    complete. Formats other than CBF/EDF/TIFF are taken as complete when non-empty.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import fabio.cbfimage, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "frame_00001.cbf"
    >>> fabio.cbfimage.CbfImage(data=np.ones((20, 30), np.int32)).write(str(path))
    >>> file_complete(path)
    True
    >>> data = path.read_bytes()
    >>> _ = path.write_bytes(data[: len(data) - 40])  # the detector is still writing
    >>> file_complete(path)
    False
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                return False
            if suffix in (".tif", ".tiff"):
                return _tiff(fh, size)
            head = fh.read(_HEAD)
            if suffix == ".cbf":
                return _cbf(path, head, size)
            if suffix == ".edf":
                return _edf(head, size)
            return True
    except (OSError, struct.error, ValueError):
        return False
