"""The modules sweeps imported that the warm process had not: imported by it before its next
fork, and kept in the cache folder for the next warm process."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path


class Learned:
    """Modules sweeps imported that the runner had not (a store's database layer, a backend's
    client, a plot's image format): each child lists them at its exit, and the runner imports
    them before its next fork, so the next sweep finds them imported. Kept in the cache folder
    for the next runner. A module whose import fails is skipped; one whose import starts a
    thread is not kept, and the runner stops (a fork keeps only the thread that forks)."""

    def __init__(self, file: Path | None) -> None:
        self.file = file

    def read(self) -> list[str]:
        if self.file is None:
            return []
        try:
            names = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [name for name in names if isinstance(name, str)]

    def import_modules(self, names: list[str]) -> bool:
        """Import ``names`` not imported yet; True when any was. Raises SystemExit when an
        import started a thread (after keeping the others)."""
        import importlib
        import threading

        kept = set(self.read())
        imported = False
        threads = threading.active_count()
        for name in sorted(set(names) - set(sys.modules)):
            try:
                importlib.import_module(name)
            except BaseException:  # a module meant for another context: skipped
                continue
            if threading.active_count() > threads:
                self._keep(kept)
                raise SystemExit(f"sweepflow runner: importing {name} started a thread; exiting")
            kept.add(name)
            imported = True
        self._keep(kept)
        return imported

    def _keep(self, names: set[str]) -> None:
        if self.file is None:
            return
        with contextlib.suppress(OSError):
            self.file.parent.mkdir(parents=True, exist_ok=True)
            partial = self.file.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps(sorted(names)), encoding="utf-8")
            partial.replace(self.file)

    @staticmethod
    def report_at_exit(folder: Path) -> None:
        """In a child: at its exit, list the modules it imported beyond the runner's."""
        import atexit

        had = frozenset(sys.modules)

        def report() -> None:
            new = sorted(name for name in set(sys.modules) - had if not name.startswith("__"))
            with contextlib.suppress(OSError):
                (folder / f"imports-{os.getpid()}.json").write_text(json.dumps(new))

        atexit.register(report)

    def take_from(self, folder: Path, pid: int) -> bool:
        """Import what the child ``pid`` listed; True when anything was imported."""
        listed = folder / f"imports-{pid}.json"
        try:
            names = json.loads(listed.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        finally:
            listed.unlink(missing_ok=True)
        return self.import_modules([name for name in names if isinstance(name, str)])


def learned_file() -> Path | None:
    """Where the modules sweeps import are kept, per Python environment."""
    from sweepflow import settings

    try:
        folder = settings.current().cache_dir
    except settings.SettingsError:
        return None
    environment = hashlib.sha256(sys.prefix.encode()).hexdigest()[:12]
    return folder / f"warm-modules-{environment}.json"
