"""Where the DAGs may read and write files: one rule for every path that comes from a param or a run id.

Anyone allowed to trigger a DAG chooses ``file_path`` / ``output_dir``, and Airflow's run-id pattern
accepts ``..``: neither may reach a file outside the folders an operator configured. So:

* Each kind of file has one **root**, a setting: ``CRM_SYNC_IMPORT_DIR`` (crm_import reads its CSV and writes
  its rejects there), ``CRM_SYNC_EXPORT_DIR`` (crm_export), ``CRM_SYNC_REPORT_DIR`` (crm_reconciliation_report).
  Unset: ``$AIRFLOW_HOME/crm_imports``, ``$AIRFLOW_HOME/crm_exports``, ``$AIRFLOW_HOME/reports``.
* A param path is relative to its root; an absolute one is accepted only when it lies inside the root.
  :func:`confine` resolves symlinks first (``Path.resolve``) and then checks containment, so ``..``
  and a symlink pointing out of the root are refused alike.
* A file is read only if it is a regular file: :func:`open_regular` walks from the root one component at a
  time with ``O_NOFOLLOW`` (a symlink swapped in after the check is refused, not followed), opens with
  ``O_NONBLOCK`` (a FIFO cannot hang the task) and checks ``S_ISREG`` on the opened descriptor (devices,
  FIFOs, sockets, directories refused).
* Files are written owner-only (0o600, folders 0o700): exports and rejects hold customer data.
  ``CRM_SYNC_FILE_MODE=640`` (or 660) gives the group read access for a shared volume; "other" never gets any.
* A name made from input (run id, file stem) goes through :func:`safe_component` before it is a path
  component: no ``/``, no ``..``, no leading dot.

Every refusal is :class:`PathRefused` (a ``ValueError``), naming the param and the root, never file content;
the task layer turns it into ``AirflowFailException`` (:func:`crm_sync.tasks.common.param_errors`: a bad param
is not retried).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from crm_sync.text import echo

__all__ = [
    "ROOT_SETTINGS",
    "PathRefused",
    "Root",
    "confine",
    "file_mode",
    "make_private_dir",
    "open_private",
    "open_regular",
    "root",
    "safe_component",
    "sha256_file",
]

log = logging.getLogger(__name__)

#: Kind -> (setting, folder under AIRFLOW_HOME when the setting is empty).
ROOT_SETTINGS: dict[str, tuple[str, str]] = {
    "import": ("CRM_SYNC_IMPORT_DIR", "crm_imports"),
    "export": ("CRM_SYNC_EXPORT_DIR", "crm_exports"),
    "report": ("CRM_SYNC_REPORT_DIR", "reports"),
}
FILE_MODE_SETTING = "CRM_SYNC_FILE_MODE"
DEFAULT_FILE_MODE = 0o600
#: Roots that would expose the system (``/proc/self/environ`` is a "regular" file to ``stat``).
_SYSTEM_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_NAME_MAX = 150


class PathRefused(ValueError):
    """A param or run id names a path outside its root, or a file that is not a regular file."""


@dataclass(frozen=True)
class Root:
    """A configured folder: ``setting`` (for messages) and its resolved ``path``."""

    kind: str
    setting: str
    path: Path

    def describe(self) -> str:
        return f"the {self.kind} folder {self.path} ({self.setting})"


def root(kind: str, env: Mapping[str, str] | None = None) -> Root:
    """The resolved root of ``kind`` (``import`` | ``export`` | ``report``); see the module docstring."""
    env = os.environ if env is None else env
    setting, default = ROOT_SETTINGS[kind]
    raw = (env.get(setting) or "").strip()
    home = Path(env.get("AIRFLOW_HOME") or Path.home() / "airflow").expanduser()
    path = (Path(raw).expanduser() if raw else home / default).resolve()
    if path == Path(path.anchor) or any(path == s or s in path.parents for s in _SYSTEM_ROOTS):
        raise PathRefused(
            f"{setting} is {path}: a system folder cannot be the {kind} folder; set it to a "
            "folder that holds only the sync's files"
        )
    return Root(kind, setting, path)


def confine(param: str, value: str | os.PathLike[str] | None, where: Root, *, must_exist: bool = False) -> Path:
    """``value`` (relative to the root, or absolute inside it) resolved; the root itself when empty.

    Symlinks are resolved before the containment check. ``must_exist``: the path must exist now, else
    :class:`PathRefused` "not found" (checked after containment: whether a file outside exists is not told).
    """
    text = "" if value is None else os.fspath(value).strip()
    if not text:
        return where.path
    shown = echo(text, 120)
    if "\x00" in text:
        raise PathRefused(f"{param} {shown} is not a usable path (it holds a NUL character)")
    candidate = Path(text).expanduser()
    candidate = candidate if candidate.is_absolute() else where.path / candidate
    try:
        resolved = candidate.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, permissions
        raise PathRefused(f"{param} {shown} cannot be resolved in {where.describe()} ({type(exc).__name__})") from None
    if resolved != where.path and where.path not in resolved.parents:
        raise PathRefused(
            f"{param} {shown} is outside {where.describe()}: give a path relative to that folder "
            "(symlinks and '..' leading out of it are refused)"
        )
    if must_exist and not os.path.lexists(resolved):
        raise PathRefused(f"{param} {shown}: file not found in {where.describe()}")
    return resolved


def _refuse_kind(param: str, shown: str, mode: int) -> PathRefused:
    what = (
        "a directory"
        if stat.S_ISDIR(mode)
        else "a FIFO (named pipe)"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    return PathRefused(f"{param} {shown} is {what}: only a regular file is read")


def open_regular(path: Path, *, param: str = "file_path", where: Root | None = None) -> IO[bytes]:
    """``path`` opened for binary reading, only if it is a regular file (see the module docstring).

    With ``where``: ``path`` must be a resolved path inside it (from :func:`confine`) and is opened one
    component at a time from the root with ``O_NOFOLLOW``. Without: only the last component is opened
    with ``O_NOFOLLOW`` (a caller that chose the path itself, e.g. a test).
    """
    shown = echo(str(path), 120)
    fds: list[int] = []
    try:
        if where is not None:
            parts = path.relative_to(where.path).parts
            if not parts:
                raise PathRefused(f"{param} {shown} is {where.describe()} itself: give a file in it")
            fds.append(os.open(where.path, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC))
            for part in parts[:-1]:
                fds.append(os.open(part, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=fds[-1]))
            fd = os.open(parts[-1], os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC, dir_fd=fds[-1])
        else:
            fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC)
    except FileNotFoundError:
        raise PathRefused(f"{param} {shown}: file not found") from None
    except OSError as exc:
        # ELOOP / ENOTDIR: a symlink where the check saw none (swapped since), or a file used as a folder.
        raise PathRefused(
            f"{param} {shown} cannot be opened safely ({os.strerror(exc.errno or 0) or exc}): symlinks are not followed"
        ) from None
    finally:
        for d in fds:
            os.close(d)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _refuse_kind(param, shown, mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


# ---------------------------------------------------------------------------------------------- writing
def file_mode(env: Mapping[str, str] | None = None) -> int:
    """Mode of written files: 0o600, or ``CRM_SYNC_FILE_MODE`` (640 or 660: group access, never "other")."""
    env = os.environ if env is None else env
    raw = (env.get(FILE_MODE_SETTING) or "").strip()
    if not raw:
        return DEFAULT_FILE_MODE
    try:
        mode = int(raw, 8)
    except ValueError:
        mode = -1
    if mode < 0 or mode & 0o600 != 0o600 or mode & ~0o660:
        log.warning(
            "%s=%s is not one of 600, 640, 660: files are written 600 (owner only)", FILE_MODE_SETTING, echo(raw, 10)
        )
        return DEFAULT_FILE_MODE
    return mode


def dir_mode(env: Mapping[str, str] | None = None) -> int:
    """Folders: the file mode plus search permission where it grants read (0o600 -> 0o700, 0o640 -> 0o750)."""
    mode = file_mode(env)
    return mode | ((mode & 0o444) >> 2)


def make_private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents with :func:`dir_mode`; folders that exist keep their mode."""
    mode = dir_mode()
    missing = []
    for p in (path, *path.parents):
        if p.exists():
            break
        missing.append(p)
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):
            p.mkdir(mode=mode)
            os.chmod(p, mode)  # mkdir's mode is filtered by the umask
    if not path.is_dir():
        raise PathRefused(f"{path} is not a folder")
    return path


def open_private(path: Path, mode: str = "w", **kwargs: Any) -> IO[Any]:
    """``open(path, mode)`` for writing, created (or truncated) with :func:`file_mode` before any byte is written.

    ``O_NOFOLLOW``: a symlink planted at ``path`` is refused, not written through. Pyarrow writers that take a
    path: call this first and close it (the file keeps its mode when the writer truncates it).
    """
    if not any(c in mode for c in "wa"):
        raise ValueError(f"open_private is for writing, got mode {mode!r}")
    flags = os.O_WRONLY | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    perms = file_mode()
    fd = os.open(path, flags, perms)
    try:
        os.fchmod(fd, perms)  # exact mode, whatever the umask or an earlier file's mode
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def write_private_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    with open_private(path, "w", encoding=encoding) as fh:
        fh.write(text)
    return path


def sha256_file(source: Path | IO[bytes]) -> str:
    """SHA-256 of a file, or of an open binary file from its start (left at its start again)."""
    digest = hashlib.sha256()
    with contextlib.ExitStack() as stack:
        f = stack.enter_context(open(source, "rb")) if isinstance(source, Path) else source
        f.seek(0)
        while chunk := f.read(1 << 20):
            digest.update(chunk)
        f.seek(0)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- names
def safe_component(text: str, fallback: str = "run") -> str:
    """``text`` as one safe path component: ``[A-Za-z0-9_.-]`` only, no ``..``, no leading dot or dash.

    Ordinary run ids keep their look (``manual__2026-03-10T10:00:00+00:00`` ->
    ``manual__2026-03-10T10_00_00_00_00``); a long one is cut and given a hash suffix, so it stays unique.
    """
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text))
    name = re.sub(r"\.{2,}", "_", name).lstrip("._-").rstrip("._")
    if len(name) > _NAME_MAX:
        name = name[: _NAME_MAX - 13].rstrip("._") + "_" + hashlib.sha256(str(text).encode()).hexdigest()[:12]
    return name or fallback


def child(parent: Path, name: str, *, fallback: str = "run") -> Path:
    """``parent / safe_component(name)``, checked to stay directly inside ``parent`` (resolved)."""
    component = safe_component(name, fallback)
    target = parent / component
    if target.resolve().parent != parent.resolve():
        raise PathRefused(f"{echo(name, 80)} does not give a folder inside {parent}")
    return target
