"""Where reports live, ``reports/<torch version>-<devices>``, and which committed baseline (a report folder
under ``reports/baselines``) a new report is compared with: the one of the same torch and devices, else the one
of the newest older torch on the same devices, so that a torch without a baseline is compared with the version
before it (what an upgrade changes); a torch older than every baseline is compared with the oldest."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from packaging.version import InvalidVersion, Version

REPORT_FILE = "accuracy.json"


def devices_tag(devices: Sequence[str]) -> str:
    """``-cpu``, ``-cpu+cuda0``: the end of a report folder's name."""
    return "-" + "+".join(d.replace(":", "") for d in devices)


def folder_name(torch_version: str, devices: Sequence[str]) -> str:
    """``2.13.0-cpu``, ``2.11.0-cpu+cuda0``: the torch release (without its local build tag) and the devices."""
    return torch_version.split("+")[0] + devices_tag(devices)


def is_baseline_root(path: str | Path) -> bool:
    """A folder of report folders rather than a report folder (it holds no ``accuracy.json`` itself)."""
    root = Path(path)
    return root.is_dir() and not (root / REPORT_FILE).exists()


def pick(root: str | Path, torch_version: str, devices: Sequence[str]) -> Path | None:
    """The baseline under ``root`` for a report of ``torch_version`` on ``devices``: its own, else the newest
    older torch's on the same devices, else the oldest newer one's (the newest for a version that does not parse;
    None: there is none for those devices)."""
    root, tag = Path(root), devices_tag(devices)
    own = root / folder_name(torch_version, devices)
    if (own / REPORT_FILE).is_file():
        return own
    found = []
    for folder in root.glob(f"*{tag}"):
        try:
            found.append((Version(folder.name.removesuffix(tag)), folder))
        except InvalidVersion:
            continue
    found = [(v, f) for v, f in found if (f / REPORT_FILE).is_file()]
    if not found:
        return None
    try:
        release = Version(torch_version.split("+")[0])
    except InvalidVersion:  # a build whose version says nothing of its age: the newest baseline
        return max(found)[1]
    older = [(v, f) for v, f in found if v < release]
    return max(older)[1] if older else min(found)[1]


def resolve(path: str | Path, torch_version: str, devices: Sequence[str]) -> Path | None:
    """``path`` itself (a report or its folder), or :func:`pick` from it when it is a folder of baselines."""
    return pick(path, torch_version, devices) if is_baseline_root(path) else Path(path)


def no_baseline(root: str | Path, devices: Sequence[str]) -> str:
    """Why :func:`resolve` found nothing."""
    tag = devices_tag(devices)
    return f"{root}: no baseline for devices {tag[1:]} (a folder <torch version>{tag} with an {REPORT_FILE})"
