"""A host's data filesystem: a sparse image, ``mkfs.ext4``, a loop device, a mount.

``<host dir>/disk.img`` is created under a temporary name and renamed when ``mkfs`` is done,
so an image of that name is always a complete filesystem; it is mounted at
``<host dir>/data``. The filesystem has no blocks reserved for root (``-m 0``): "disk full"
is full for every process alike. The loop device does direct I/O on the image (no second
copy in the page cache, and ``fsync`` inside the host reaches the machine's disk).

Every function converges: a loop device left attached twice to the same image is reduced
to one, a stale or foreign mount on the mount point is unmounted first.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from infra.errors import InfraError
from infra.hosts import _system

log = logging.getLogger(__name__)

BALLAST = "shadowshift-ballast"
"""The file :func:`fill` writes at the top of the data filesystem."""


@dataclass(frozen=True)
class Mount:
    """One line of ``/proc/self/mountinfo``."""

    device: str
    """``major:minor`` of the mounted filesystem."""
    source: str
    """What was mounted (``/dev/loop3``)."""
    fstype: str
    """Filesystem type."""


def create_image(image: Path, size_mib: int) -> None:
    """Create ``image`` (sparse, ext4) unless a complete one of that size exists.

    A leftover of another size is an image of a different host spec: replaced.
    """
    if image.exists() and image.stat().st_size == size_mib * 2**20:
        return
    image.parent.mkdir(parents=True, exist_ok=True)
    scratch = image.with_name(f".{image.name}.partial")
    scratch.unlink(missing_ok=True)
    with open(scratch, "wb") as handle:
        handle.truncate(size_mib * 2**20)
    _system.run(["mkfs.ext4", "-F", "-q", "-m", "0", "-E", "nodiscard",
                 "-L", image.parent.name[:16], str(scratch)], timeout_s=120)
    os.replace(scratch, image)


def loop_devices(image: Path) -> list[str]:
    """The loop devices attached to ``image`` (``losetup -j``), oldest first."""
    if not image.exists():
        return []
    out = _system.run(["losetup", "-j", str(image)], check=False).stdout
    devices = [line.split(":", 1)[0] for line in out.splitlines() if line.strip()]
    return sorted(devices, key=lambda d: int(d.removeprefix("/dev/loop") or 0))


def attach(image: Path) -> str:
    """The one loop device of ``image``: an existing one is adopted, extra ones detached."""
    devices = loop_devices(image)
    mounted = {m.source for m in mounts_at(image.parent / "data")}
    keep = next((d for d in devices if d in mounted), devices[0] if devices else None)
    for extra in devices:
        if extra != keep:
            log.warning("Loop device %s duplicates %s for %s. Detaching it.", extra, keep, image)
            detach(extra)
    if keep is not None:
        return keep
    result = _system.run(["losetup", "--find", "--show", "--direct-io=on", str(image)],
                         check=False)
    if result.returncode != 0:  # a backing filesystem without O_DIRECT (tmpfs, overlayfs)
        result = _system.run(["losetup", "--find", "--show", str(image)])
    return result.stdout.strip()


def detach(device: str) -> None:
    """Detach a loop device (a busy one detaches when its last user lets go)."""
    result = _system.run(["losetup", "-d", device], check=False)
    if result.returncode != 0 and "No such device" not in result.stderr:
        log.warning("Could not detach %s: %s", device, result.stderr.strip())


def mounts_at(mount_point: Path) -> list[Mount]:
    """What is mounted on ``mount_point``, bottom first (stacked mounts included)."""
    target = str(mount_point)
    found = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            fields = line.split()
            separator = fields.index("-")
            if _unescape(fields[4]) == target:
                found.append(Mount(fields[2], fields[separator + 2], fields[separator + 1]))
    return found


def mount(device: str, mount_point: Path) -> None:
    """Mount ``device`` on ``mount_point`` exactly once, unmounting whatever else is there."""
    mount_point.mkdir(parents=True, exist_ok=True)
    current = mounts_at(mount_point)
    if [m.source for m in current] == [device]:
        return
    if current:
        log.warning("%s has %s mounted. Unmounting before mounting %s.", mount_point,
                    [m.source for m in current], device)
        unmount(mount_point)
    _system.run(["mount", "-t", "ext4", "-o", "noatime", device, str(mount_point)])


def unmount(mount_point: Path) -> None:
    """Unmount everything on ``mount_point``; a busy filesystem is detached lazily (it goes
    when its last user closes it)."""
    for _ in range(len(mounts_at(mount_point))):
        result = _system.run(["umount", str(mount_point)], check=False)
        if result.returncode != 0:
            log.warning("%s is busy (%s). Detaching it lazily.", mount_point,
                        result.stderr.strip())
            _system.run(["umount", "-l", str(mount_point)])
    if mounts_at(mount_point):
        raise InfraError(f"{mount_point} is still mounted after unmounting it")


def device_of(mount_point: Path) -> str:
    """``major:minor`` of the filesystem mounted on ``mount_point``.

    Raises:
        InfraError: nothing is mounted there.
    """
    current = mounts_at(mount_point)
    if not current:
        raise InfraError(f"nothing is mounted on {mount_point}")
    return current[-1].device


def fill(data_dir: Path) -> int:
    """Fill the filesystem on ``data_dir`` with :data:`BALLAST` until ``ENOSPC``; the
    ballast's size in bytes.

    Blocks are reserved with ``fallocate`` (no data written, the image stays sparse) and the
    last ones with small writes, until the kernel refuses one.
    """
    ballast = data_dir / BALLAST
    with open(ballast, "ab") as handle:
        fd = handle.fileno()
        block = os.statvfs(data_dir).f_frsize
        while _reserve(fd, data_dir, block):
            pass
        with contextlib.suppress(OSError):  # ENOSPC ends it, at write or at fsync
            while True:
                os.write(fd, b"\0" * block)
        with contextlib.suppress(OSError):
            os.fsync(fd)
        return os.fstat(fd).st_size


def _reserve(fd: int, data_dir: Path, block: int) -> bool:
    """Append as much of the free space as one ``fallocate`` gets (halving the request
    while the extent tree's own blocks do not fit); whether it got any."""
    status = os.statvfs(data_dir)
    chunk = status.f_bavail * status.f_frsize
    while chunk >= block:
        try:
            os.posix_fallocate(fd, os.fstat(fd).st_size, chunk)
            return True
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
            chunk //= 2
    return False


def ballast_size(data_dir: Path) -> int:
    """Bytes of :data:`BALLAST` on ``data_dir`` (0: none)."""
    try:
        return (data_dir / BALLAST).stat().st_size
    except FileNotFoundError:
        return 0


def free(data_dir: Path) -> int:
    """Remove the ballast; the bytes it held."""
    size = ballast_size(data_dir)
    (data_dir / BALLAST).unlink(missing_ok=True)
    return size


def _unescape(path: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(code, char)
    return path
