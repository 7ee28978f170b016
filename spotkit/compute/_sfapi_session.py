"""One authenticated session with NERSC's Superfacility API, through ``sfapi-client``.

:class:`SfapiSession` owns the ``sfapi_client.Client`` (made on first use; it fetches and
renews tokens from the client key, see :mod:`spotkit.compute._credentials`), the machine's
compute object, the retries of requests that can be repeated safely, and the translation of
whatever sfapi-client, authlib, httpx or tenacity raise into one spotkit error that names
the operation and what to do. It also runs short commands and moves small files. The NERSC
target (:mod:`spotkit.compute._nersc`) builds jobs on top of it.

Transient answers (HTTP 500, dropped connections; ``sfapi-client`` itself retries
429/502/503/504 up to 10 times) are retried with backoff; what still fails becomes a
:class:`~spotkit.errors.NERSCError`, a refused key a
:class:`~spotkit.errors.CredentialsError`.
"""

from __future__ import annotations

import io
import json
import logging
import shlex
import threading
import time as _time
import warnings
from pathlib import PurePosixPath

from ..backoff import Backoff
from ..errors import MachineUnavailableError, NERSCError, SpotkitError
from ._credentials import ClientKey, CredentialsError, token_error

__all__ = ["SfapiSession"]

log = logging.getLogger(__name__)

_RETRY_STATUS = {500}  # sfapi-client retries 429/502/503/504 itself
_sleep = _time.sleep  # tests replace this to make the backoff instant


def _sfapi():
    """Import sfapi-client (optional dependency), keeping authlib's import warning quiet."""
    try:
        with warnings.catch_warnings():
            # authlib warns that it prefers httpx2 (a filter it installs first says "always")
            import authlib.deprecate  # noqa: F401

            warnings.filterwarnings("ignore", message="The httpx module is deprecated")
            import sfapi_client
            import sfapi_client.compute
            import sfapi_client.paths
    except ImportError as exc:
        raise ImportError(
            "spotkit.compute.NERSC needs sfapi-client: pip install \"spotkit[hpc]\""
        ) from exc
    return sfapi_client


class _Retry(Exception):
    """Internal: ``error`` may go away if the same request is sent again."""

    def __init__(self, error: SpotkitError):
        self.error = error



class SfapiSession:
    """One client key's session with the Superfacility API for one machine.

    Thread-safe: one request at a time (:attr:`lock`).

    Parameters
    ----------
    key : ClientKey
        The API client key (:func:`~spotkit.compute._credentials.load_key`).
    machine : str
        ``"perlmutter"``.
    api_base_url, token_url : str, optional
        Superfacility API and token endpoints (default: NERSC's).
    retries : int
        Extra tries, with backoff, for a request that failed with HTTP 500 or a lost
        connection (only requests that can be repeated safely).

    Examples
    --------
    Making a session contacts nothing; the first request needs NERSC (or a test server):

    >>> from spotkit.compute._credentials import ClientKey
    >>> session = SfapiSession(ClientKey("abcdefghijklm", "{}"), "perlmutter")
    >>> session
    <SfapiSession perlmutter, not connected>
    >>> session.run("echo $SCRATCH", repeatable=True)   # needs NERSC  # doctest: +SKIP
    '/pscratch/sd/u/user'
    """

    def __init__(self, key: ClientKey, machine: str, *, api_base_url: str | None = None,
                 token_url: str | None = None, retries: int = 3):
        self.key = key
        self.machine = machine
        self.api_base_url = api_base_url
        self.token_url = token_url
        self.retries = int(retries)
        self.lock = threading.RLock()
        self._client = None
        self._compute = None

    def __repr__(self) -> str:
        state = "connected" if self._client is not None else "not connected"
        return f"<SfapiSession {self.machine}, {state}>"

    @staticmethod
    def pause(seconds: float) -> None:
        """Wait between two tries (the module's ``_sleep``, which tests make instant)."""
        _sleep(seconds)

    # -- sfapi-client plumbing ------------------------------------------------------------

    @property
    def client(self):
        """The ``sfapi_client.Client`` (made on first use; it fetches and renews tokens)."""
        with self.lock:
            if self._client is None:
                sfapi = _sfapi()
                from sfapi_client._sync.client import SFAPI_BASE_URL, SFAPI_TOKEN_URL

                self._client = sfapi.Client(
                    self.key.client_id,
                    self.key.secret,
                    api_base_url=self.api_base_url or SFAPI_BASE_URL,
                    token_url=self.token_url or SFAPI_TOKEN_URL,
                )
            return self._client

    def close(self) -> None:
        """Release the HTTP connection (a later call opens a new one)."""
        with self.lock:
            if self._client is not None:
                self._client.close()
            self._client = None
            self._compute = None

    def compute(self, *, refresh: bool = False):
        """The ``sfapi_client`` compute object for the machine (``GET status/{machine}``)."""
        with self.lock:
            if self._compute is None or refresh:
                self._compute = self.call(
                    "machine status", lambda: self.client.compute(self.machine)
                )
            return self._compute

    def check_available(self):
        """Fetch the machine's status; raise :class:`MachineUnavailableError` when it is down.

        Returns
        -------
        sfapi_client.compute.Compute
        """
        compute = self.compute(refresh=True)
        status = getattr(compute.status, "value", compute.status)
        if status == "unavailable":
            notes = "; ".join(compute.notes or []) or compute.description or "no reason given"
            raise MachineUnavailableError(self.machine, notes)
        if status != "active":
            log.warning("NERSC %s status is %s: %s", self.machine, status, compute.description)
        return compute

    def call(self, what: str, fn, *, repeatable: bool = True):
        """Run one API operation; retry transient failures with backoff; translate errors."""
        attempts = 1 + (self.retries if repeatable else 0)
        for attempt in range(1, attempts + 1):
            try:
                with self.lock:
                    return fn()
            except SpotkitError:
                raise
            except Exception as exc:
                error = self.translate(exc, what)
                if not isinstance(error, _Retry):
                    raise error from (None if isinstance(error, CredentialsError) else exc)
                if attempt == attempts:
                    raise error.error from exc
                delay = Backoff(1.0, 2.0, 30.0).delay(attempt)
                log.warning(
                    "NERSC API %s failed (%s); retrying in %.0f s (try %d of %d)",
                    what, _short(exc), delay, attempt + 1, attempts,
                )
                self.pause(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def translate(self, exc: BaseException, what: str) -> SpotkitError | _Retry:
        """One spotkit error for whatever sfapi-client, authlib, httpx or tenacity raised;
        wrapped in :class:`_Retry` when sending the request again may work."""
        import httpx
        import tenacity
        from authlib.common.errors import AuthlibBaseError

        sfapi = _sfapi()
        gave_up = ""
        if isinstance(exc, tenacity.RetryError):
            inner = exc.last_attempt.exception()
            gave_up = f" after {exc.last_attempt.attempt_number} tries by sfapi-client"
            exc = inner if inner is not None else exc
        machine = self.machine
        if isinstance(exc, AuthlibBaseError):
            return token_error(exc.error, exc.description, key=self.key)
        if isinstance(exc, httpx.HTTPStatusError):
            code = exc.response.status_code
            detail = _detail(exc.response)
            if self._is_token_request(exc.request):
                error = NERSCError(
                    f"NERSC token endpoint failed during {what}: HTTP {code} {detail}"
                    f"{gave_up}. NERSC's login service may be down; try again later.",
                    machine=machine, operation=what, status_code=code, detail=detail,
                )
                return _Retry(error) if code in _RETRY_STATUS and not gave_up else error
            if code == 401:
                return CredentialsError(
                    f"the Superfacility API did not accept the access token for {what} "
                    f"({detail}); the NERSC key {self.key.path} may have been revoked. "
                    "Create a new key at https://iris.nersc.gov.",
                    reason="rejected", path=self.key.path,
                )
            if code == 403:
                return token_error("access_denied", f"HTTP 403 for {what}: {detail}",
                                   key=self.key)
            hint = ("The API had a transient problem; try again in a few minutes "
                    "(status: https://www.nersc.gov/live-status/motd/)."
                    if code >= 500 or code == 429 else "The request was refused.")
            error = NERSCError(
                f"NERSC API {what} failed: HTTP {code} {detail}{gave_up}. {hint}",
                machine=machine, operation=what, status_code=code, detail=detail,
            )
            return _Retry(error) if code in _RETRY_STATUS and not gave_up else error
        if isinstance(exc, httpx.TransportError):
            error = NERSCError(
                f"cannot reach the NERSC API for {what}: {exc.__class__.__name__}{gave_up}. "
                "Check the network (and api_base_url), then try again.",
                machine=machine, operation=what,
            )
            return error if gave_up else _Retry(error)
        if isinstance(exc, sfapi.SfApiError):
            return NERSCError(f"NERSC API {what} failed: {exc.message}",
                              machine=machine, operation=what, detail=str(exc.message))
        return NERSCError(
            f"NERSC API {what} gave an unexpected answer: {exc.__class__.__name__}: {exc}",
            machine=machine, operation=what,
        )

    def _is_token_request(self, request) -> bool:
        from sfapi_client._sync.client import SFAPI_TOKEN_URL

        url = str(request.url).split("?", 1)[0]
        return url == (self.token_url or SFAPI_TOKEN_URL)


    # -- files and commands at NERSC -----------------------------------------------------

    def run(self, command: str | list[str], *, repeatable: bool = False) -> str:
        """Run a short command on a login node (``compute.run``); return its output.

        Parameters
        ----------
        command : str or list of str
            A list is shell-quoted word by word; a string is passed as is.
        repeatable : bool
            The command may safely run twice (``mkdir -p``): retry it after an HTTP 500.
        """
        text = shlex.join(command) if isinstance(command, list) else command
        return self.call(f"command {text[:40]!r}", lambda: self.compute().run(text),
                          repeatable=repeatable)

    def upload(self, data: bytes, remote: str) -> str:
        """Write ``data`` to the file ``remote`` at NERSC (its folder must exist)."""
        sfapi = _sfapi()

        def put():
            path = sfapi.paths.RemotePath(path=remote, compute=self.compute())
            return str(path.upload(io.BytesIO(data)))

        return self.call(f"upload of {PurePosixPath(remote).name}", put)

    def download(self, remote: str) -> bytes | None:
        """The content of the file ``remote`` at NERSC, or ``None`` when it does not exist."""
        sfapi = _sfapi()

        def get():
            try:
                [path] = self.compute().ls(remote)
                return path.download(binary=True).read()
            except sfapi.SfApiError as exc:
                if "No such file" in str(exc.message):
                    return None
                raise

        return self.call(f"download of {PurePosixPath(remote).name}", get)


def _detail(response) -> str:
    try:
        data = response.json()
    except (ValueError, json.JSONDecodeError):
        return (response.text or "")[:200]
    if isinstance(data, dict):
        return str(data.get("detail") or data.get("error") or data)[:200]
    return str(data)[:200]


def _short(exc: BaseException) -> str:
    code = getattr(getattr(exc, "response", None), "status_code", None)
    return f"HTTP {code}" if code else exc.__class__.__name__
