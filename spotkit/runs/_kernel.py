"""A Jupyter kernel registered for the running Python environment.

papermill resolves a kernel by name through Jupyter's search path, in which a user-level
kernel of the same name shadows the environment's own. So the name spotkit registers is
unique to the environment (its prefix), and the spec is rewritten when it no longer points at
this interpreter. Runs therefore never depend on whatever ``python3`` kernel happens to be
installed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["ensure_kernel", "kernel_name_for_env"]


def kernel_name_for_env(prefix: str | None = None) -> str:
    """Return the kernel name spotkit uses for a Python environment.

    Parameters
    ----------
    prefix : str, optional
        Environment prefix; defaults to ``sys.prefix``.

    Returns
    -------
    str
        ``spotkit-<env name>-<6 hex digits of the prefix hash>``, e.g. ``spotkit-venv-1a2b3c``.
    """
    prefix = os.path.realpath(prefix or sys.prefix)
    digest = hashlib.sha256(prefix.encode()).hexdigest()[:6]
    stem = "".join(c if c.isalnum() else "-" for c in Path(prefix).name.lower()) or "env"
    return f"spotkit-{stem}-{digest}"


def ensure_kernel(name: str | None = None) -> str:
    """Register (or repair) the Jupyter kernel spec for this environment and return its name.

    The spec is written under ``sys.prefix/share/jupyter/kernels`` (falling back to the user's
    Jupyter directory when the prefix is read-only). If ``SPOTKIT_KERNEL`` is set, that kernel
    name is used as is and nothing is written.

    Parameters
    ----------
    name : str, optional
        Kernel name; defaults to :func:`kernel_name_for_env`.

    Returns
    -------
    str
        The kernel name to pass to papermill.
    """
    if name is None and os.environ.get("SPOTKIT_KERNEL"):
        return os.environ["SPOTKIT_KERNEL"]
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    name = name or kernel_name_for_env()
    ksm = KernelSpecManager()
    try:
        spec = ksm.get_kernel_spec(name)
        if spec.argv and os.path.realpath(spec.argv[0]) == os.path.realpath(sys.executable):
            return name
        logger.info("kernel %s points at %s; re-registering for %s", name, spec.argv[:1],
                    sys.executable)
    except NoSuchKernel:
        logger.info("registering Jupyter kernel %s for %s", name, sys.executable)

    from ipykernel.kernelspec import install

    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    display = f"Python {version} (spotkit, {Path(sys.prefix).name})"
    try:
        install(kernel_name=name, display_name=display, prefix=sys.prefix)
    except OSError:
        install(kernel_name=name, display_name=display, user=True)
    return name
