"""The live model of ``sweepflow serve``, and the thread that follows a registry alias.

A pure-Python module (no web framework): :class:`LiveModel` holds the version being served;
:class:`AliasFollower` polls the registry every ``poll_seconds`` and, when the alias points at
another version, loads it **only** through :func:`tracking.versions.load_version` (our skops
loader: recorded sha256, in-code allowlist) and swaps it in with one reference assignment.

Swapping is safe for requests in flight: a request takes the current :class:`Served` once and
scores with it to the end, so it sees the old or the new version, never a mix, and none fails.
A version whose file fails a check is never served: the old one stays, the refusal is logged and
shown by ``/health``, and that version is not tried again until the alias leaves it and returns
(a poll that cannot reach the registry is logged too; serving goes on).

Bound: the new version answers within ``poll_seconds`` plus the time to download, check and
load its file (well under a second for the models our sweeps make) after the alias moves.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from churnml.scoring import known_categories
from tracking import versions
from tracking.model_files import ModelFileError

logger = logging.getLogger("sweepflow.serve")


def utc_now() -> str:
    """The current UTC time as ISO text."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Served:
    """One loaded version: what requests score with."""

    name: str
    version: str
    model: Any
    sha256: str
    checks: str
    since: str
    categories: dict[str, set[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Refusal:
    """A version that was not swapped in, and why."""

    version: str
    reason: str
    at: str


class LiveModel:
    """The served version and the last refusal; reads and swaps are single assignments."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.last_refusal: Refusal | None = None
        self.last_poll: str | None = None
        self.last_poll_error: str | None = None

    def swap(self, served: Served) -> None:
        """Serve ``served`` from the next request on."""
        previous = self.served.version
        self.served = dataclasses.replace(served, since=utc_now())
        logger.info("now serving %s v%s (was v%s)", served.name, served.version, previous)

    def refuse(self, version: str, reason: str) -> None:
        """Record (and log) that ``version`` was not swapped in."""
        self.last_refusal = Refusal(version, reason, utc_now())
        logger.error(
            "refused %s v%s, still serving v%s: %s",
            self.served.name,
            version,
            self.served.version,
            reason,
        )


def load_served(client: Any, ref: versions.VersionRef) -> Served:
    """Download (if needed), check and load ``ref`` through our skops loader.

    Raises:
        ModelFileError: The file fails a check (hash, allowlist, format, size).
    """
    with tempfile.TemporaryDirectory(prefix="sweepflow-serve-") as workdir:
        loaded = versions.load_version(client, ref, workdir=workdir)
    return Served(
        name=ref.name,
        version=ref.version,
        model=loaded.model,
        sha256=loaded.sha256,
        checks=loaded.checks,
        since=utc_now(),
        categories=known_categories(loaded.model),
    )


def resolve(client: Any, name: str, *, alias: str | None, version: int | None) -> Any:
    """The version to serve: ``version`` if given, else the holder of ``alias``.

    Raises:
        versions.VersionNotFoundError: No such model, version or alias.
    """
    if version is not None:
        return versions.get_version(client, name, version)
    return versions.require_alias(client, name, alias or "champion")


class AliasFollower:
    """A daemon thread that swaps ``live`` to whatever version ``alias`` points at."""

    def __init__(
        self,
        live: LiveModel,
        client_factory: Callable[[], Any],
        *,
        alias: str,
        poll_seconds: float,
    ) -> None:
        self.live = live
        self.alias = alias
        self.poll_seconds = poll_seconds
        self._client_factory = client_factory
        self._client: Any = None
        self._refused: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alias-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.poll_once()

    def poll_once(self) -> None:
        """Look at the alias once; swap or refuse when it moved. Never raises."""
        name = self.live.served.name
        try:
            if self._client is None:
                self._client = self._client_factory()
            ref = versions.by_alias(self._client, name, self.alias)
        except Exception as error:  # the registry is down or unreachable: keep serving
            self.live.last_poll_error = f"{utc_now()}: {type(error).__name__}: {error}"[:500]
            logger.warning("cannot read @%s of %s: %s", self.alias, name, error)
            return
        self.live.last_poll = utc_now()
        self.live.last_poll_error = None
        if ref is None or ref.version == self.live.served.version:
            self._refused = None
            return
        if ref.version == self._refused:
            return  # refused already; tried again when the alias leaves it and comes back
        started = time.monotonic()
        try:
            served = load_served(self._client, ref)
        except ModelFileError as error:
            self._refused = ref.version
            self.live.refuse(ref.version, str(error))
            return
        except Exception as error:  # a download failure: try again at the next poll
            logger.warning("could not load %s v%s (will retry): %s", name, ref.version, error)
            return
        self._refused = None
        self.live.swap(served)
        logger.info("loaded v%s in %.2f s", ref.version, time.monotonic() - started)
