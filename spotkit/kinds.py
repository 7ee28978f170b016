"""Dataset kinds: the one place that names them and the file layouts of the raw ones.

A dataset's *kind* (``"tomo/raw"``, ``"saxs/iq"``, ...) says what its file holds; rules,
notebooks (``spotkit.kinds`` in their metadata), readers and the catalog all speak of
datasets by kind. Raw kinds carry the HDF5 layout spotkit's readers and writers agree on;
derived kinds are whatever a notebook declares with :func:`spotkit.runs.declare_output` —
the ones below are those the shipped notebooks produce, and any other ``family/name``
string is allowed.

Examples
--------
>>> from spotkit import kinds
>>> kinds.TOMO_RAW
'tomo/raw'
>>> kinds.raw_layout(kinds.TOMO_RAW).data
'exchange/data'
>>> kinds.is_raw("saxs/iq"), kinds.is_raw(kinds.SAXS_RAW)
(False, True)
>>> kinds.describe("saxs/change-report")
'change report of a frame series (HTML/JSON)'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "KINDS",
    "SAXS_CHANGE_REPORT",
    "SAXS_IQ",
    "SAXS_RAW",
    "SAXS_REDUCED",
    "TOMO_RAW",
    "TOMO_RECON",
    "TOMO_SLICES",
    "UNKNOWN",
    "RawLayout",
    "describe",
    "is_raw",
    "raw_layout",
]

TOMO_RAW = "tomo/raw"
SAXS_RAW = "saxs/raw"
TOMO_RECON = "tomo/recon"
TOMO_SLICES = "tomo/slices"
SAXS_IQ = "saxs/iq"
SAXS_REDUCED = "saxs/reduced"
SAXS_CHANGE_REPORT = "saxs/change-report"
#: the kind of a file no reader recognises (the flow still catalogues and moves it)
UNKNOWN = "unknown"


@dataclass(frozen=True)
class RawLayout:
    """Where a raw kind keeps its arrays inside an HDF5 file (paths without a leading ``/``).

    Attributes
    ----------
    data : str
        The frames (projections or detector images).
    required : tuple of str
        Every dataset a complete file has; a file being written lacks some of them.
    """

    data: str
    required: tuple[str, ...]

    @property
    def key(self) -> str:
        """The data path as an absolute HDF5 key (``/exchange/data``)."""
        return "/" + self.data


_RAW: dict[str, RawLayout] = {
    # Data Exchange (APS/ALS); an NXtomo file is read by its own reader, same kind
    TOMO_RAW: RawLayout("exchange/data", ("exchange/data", "exchange/data_white",
                                          "exchange/data_dark", "exchange/theta")),
    # NeXus SAXS frames (NXdetector data)
    SAXS_RAW: RawLayout("entry/data/data", ("entry/data/data",)),
}

#: every kind spotkit itself reads or writes, with a one-line description
KINDS: dict[str, str] = {
    TOMO_RAW: "tomography scan: projections, flats, darks and angles",
    SAXS_RAW: "SAXS/WAXS frame series from an area detector",
    TOMO_RECON: "reconstructed volume (HDF5 or zarr)",
    TOMO_SLICES: "a few reconstructed slices (quick look)",
    SAXS_IQ: "azimuthally integrated I(q) per frame",
    SAXS_REDUCED: "reduced SAXS series (NXcanSAS) with change marks",
    SAXS_CHANGE_REPORT: "change report of a frame series (HTML/JSON)",
    UNKNOWN: "a file no reader recognises",
}


def is_raw(kind: str) -> bool:
    """Whether ``kind`` is a raw kind (one a detector writes, with a known layout)."""
    return kind in _RAW


def raw_layout(kind: str) -> RawLayout:
    """The HDF5 layout of the raw kind ``kind``.

    Raises
    ------
    KeyError
        If ``kind`` is not a raw kind; the message lists the raw kinds.
    """
    try:
        return _RAW[kind]
    except KeyError:
        raise KeyError(f"{kind!r} is not a raw dataset kind; raw kinds are "
                       f"{', '.join(sorted(_RAW))}") from None


def describe(kind: str) -> str:
    """A one-line description of ``kind`` (``family/name`` when spotkit does not know it)."""
    return KINDS.get(kind, f"{kind} (declared by a notebook)")
