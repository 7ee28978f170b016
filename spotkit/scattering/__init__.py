"""Scattering: azimuthal integration of detector frames with pyFAI.

pyFAI is the field's standard for azimuthal integration; spotkit wraps it, it does not
rewrite it. Install it with ``pip install "spotkit[scattering]"``.
"""

from spotkit.scattering._integrate import integrate_frames, load_geometry, shadow_mask

__all__ = ["integrate_frames", "load_geometry", "shadow_mask"]
