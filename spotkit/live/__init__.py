"""Real time: reduce and judge frames while the detector writes them (``spotkit live``)."""
