"""A Jupyter kernel registered for the running Python environment.

papermill resolves a kernel by name through Jupyter's search path, in which a user-level
kernel of the same name shadows the environment's own. So the name spotkit registers is
unique to the environment (its prefix), and the spec is rewritten when it no longer points at
this interpreter. Runs therefore never depend on whatever ``python3`` kernel happens to be
installed.

The kernel's sockets are encrypted (CurveZMQ keys provisioned by jupyter_client for a kernel
spec that declares ``supported_encryption: ["curve"]``, as ipykernel's own spec does); where
that is not possible they are Unix sockets (IPC transport) on POSIX. Either way ipykernel
has no reason for its "Kernel is running over TCP without encryption" warning, which it would
otherwise log in every run and into every executed notebook.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["ensure_kernel", "kernel_engine_options", "kernel_name_for_env"]


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
        if spec.argv and os.path.realpath(spec.argv[0]) == os.path.realpath(sys.executable) \
                and (_supports_curve(spec) or not _ipykernel_supports_curve()):
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


def _supports_curve(spec) -> bool:
    supported = (getattr(spec, "metadata", None) or {}).get("supported_encryption") or ()
    if isinstance(supported, str):
        supported = [supported]
    return "curve" in {str(s).strip().lower() for s in supported}


def _ipykernel_supports_curve() -> bool:
    try:
        from ipykernel.kernelspec import get_kernel_dict
    except ImportError:  # pragma: no cover - ipykernel is a dependency
        return False
    return _supports_curve(type("Spec", (), {"metadata": get_kernel_dict().get("metadata")}))


def kernel_engine_options(kernel_name: str) -> dict:
    """Keyword arguments for papermill's engine that secure the kernel's connection.

    With a kernel spec that declares CurveZMQ support and a pyzmq built with it, the kernel
    manager provisions Curve keys (``transport_encryption="required"``); otherwise, on POSIX,
    the kernel talks over Unix sockets (``transport="ipc"``), which no other machine can
    reach. On Windows without Curve, nothing changes (TCP on localhost).

    Parameters
    ----------
    kernel_name : str
        The kernel the run uses.

    Returns
    -------
    dict
        ``{"config": traitlets.config.Config}``, or ``{}``.
    """
    import zmq
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from jupyter_client.manager import KernelManager
    from traitlets.config import Config

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        return {}
    config = Config()
    if zmq.has("curve") and _supports_curve(spec) and \
            KernelManager.class_traits().get("transport_encryption") is not None:
        config.KernelManager.transport_encryption = "required"
    elif os.name == "posix":
        config.KernelManager.transport = "ipc"
    else:  # pragma: no cover - Windows without CurveZMQ
        return {}
    return {"config": config}
