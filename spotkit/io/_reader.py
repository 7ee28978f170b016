"""The small base class every raw-data reader implements (xarray's ``BackendEntrypoint`` shape)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ._info import DatasetInfo
from ._types import Chunks

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["Reader"]


class Reader:
    """A raw-data layout spotkit can catalogue, watch and open.

    Subclasses set the class attributes and implement :meth:`sniff`,
    :meth:`read_metadata` and :meth:`open`; :meth:`check_complete` has a default (the
    metadata read cleanly) that readers refine.

    Attributes
    ----------
    name : str
        Registry name (``"dxchange"``, ``"nxtomo"``...).
    kind : str
        The dataset kind it produces: ``"tomo/raw"`` or ``"saxs/raw"``.
    layout : str
        One line describing the layout, shown when a file matches no reader.
    folder : bool
        True when a dataset of this layout is a folder (the watcher then treats the folder,
        not each file in it, as one candidate).
    suffixes : tuple of str
        File name endings the watcher looks at for this layout (empty for folders).
    priority : int
        Higher sniffs first (a specific layout before a generic one).
    """

    name: str = ""
    kind: str = ""
    layout: str = ""
    folder: bool = False
    suffixes: tuple[str, ...] = ()
    priority: int = 0

    def sniff(self, path: Path) -> bool:
        """Cheaply decide whether this reader understands ``path`` (never raises)."""
        raise NotImplementedError

    def read_metadata(self, path: Path) -> DatasetInfo:
        """What the dataset says about itself, checked; :class:`InputFileError` otherwise."""
        raise NotImplementedError

    def open(self, path: Path, *, chunks: Chunks = None) -> xr.Dataset | xr.DataArray:
        """The dataset as a lazy (dask-backed) xarray object."""
        raise NotImplementedError

    def check_complete(self, path: Path) -> tuple[bool, str | None]:
        """Whether the acquisition has finished: ``(True, None)`` or ``(False, reason)``.

        The default: the metadata read without error (every required field is there).
        """
        from spotkit.errors import SpotkitError

        try:
            self.read_metadata(path)
        except (SpotkitError, OSError, ValueError) as exc:
            return False, str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__
        return True, None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {self.kind}>"
