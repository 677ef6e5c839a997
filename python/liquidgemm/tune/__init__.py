"""The tuning cache: one JSON file per (GPU, driver, package version), written by `liquidgemm tune`, read by
`liquidgemm.dispatch` once per process.

Path: `<user cache dir>/liquidgemm/tune-v1/<gpu-name-slug>-<sm_count>sm-cc<major><minor>-drv<driver>-v<version>.json`
(`LIQUIDGEMM_TUNE_CACHE` overrides it). The GPU, driver and package version are in the name so that a new
wheel, a new driver or another GPU never reads stale choices (they simply find no file and use the heuristic).

File format:
    {"schema": 1,
     "meta": {"gpu": ..., "sm_count": ..., "cc": "9.0", "driver": "12.8", "version": ..., "date": ...},
     "entries": {"m,n,k,group,out": {"config": "<config id>", "us": 12.3, "date": "2025-01-31T12:00:00Z"}}}

This module only touches files and the CUDA driver's identity queries, so it is cheap to import.
"""
from __future__ import annotations

import ctypes
import datetime
import json
import os
import re
from pathlib import Path

SCHEMA = 1
ENV_CACHE = "LIQUIDGEMM_TUNE_CACHE"


def cache_key(m: int, n: int, k: int, group_size: int, out: str) -> str:
    return f"{m},{n},{k},{group_size},{out}"


def parse_key(key: str) -> tuple[int, int, int, int, str]:
    m, n, k, group, out = key.split(",")
    return int(m), int(n), int(k), int(group), out


def _problem_then_m(key: str) -> tuple:
    m, n, k, group, out = parse_key(key)
    return n, k, group, out, m


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _driver_version() -> str:
    """CUDA driver API version as "major.minor" (e.g. "12.8"), from libcuda itself: no extra dependency."""
    try:
        version = ctypes.c_int()
        if ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(version)) == 0:
            return f"{version.value // 1000}.{version.value % 1000 // 10}"
    except OSError:
        pass
    return "unknown"


def gpu_identity(device: int | None = None) -> dict | None:
    """{gpu, sm_count, cc, driver} of a CUDA device (default: the current one), or None without a GPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(torch.cuda.current_device() if device is None else device)
    return {"gpu": props.name, "sm_count": props.multi_processor_count, "cc": f"{props.major}.{props.minor}",
            "driver": _driver_version()}


def cache_file_name(identity: dict, version: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", identity["gpu"].lower()).strip("-")
    cc = identity["cc"].replace(".", "")
    return f"{slug}-{identity['sm_count']}sm-cc{cc}-drv{identity['driver']}-v{version}.json"


def cache_path(identity: dict | None = None) -> Path | None:
    """Where this GPU's tuning cache lives: `$LIQUIDGEMM_TUNE_CACHE`, else the per-user cache directory;
    None when there is no override and no GPU to name the file after."""
    override = os.environ.get(ENV_CACHE)
    if override:
        return Path(override).expanduser()
    identity = identity or gpu_identity()
    if identity is None:
        return None
    from .. import __version__

    return user_cache_dir() / f"tune-v{SCHEMA}" / cache_file_name(identity, __version__)


def user_cache_dir() -> Path:
    """platformdirs' per-user cache directory when it is installed, else $XDG_CACHE_HOME or ~/.cache."""
    try:
        import platformdirs
    except ImportError:
        return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "liquidgemm"
    return Path(platformdirs.user_cache_dir("liquidgemm"))


def load_cache(path: str | os.PathLike) -> dict:
    """The cache file as a dict (`{"schema", "meta", "entries"}`); an empty cache if the file does not exist.
    A file that is not a tuning cache of this schema raises ValueError naming the path."""
    path = Path(path)
    if not path.exists():
        return {"schema": SCHEMA, "meta": {}, "entries": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"tuning cache {str(path)!r} is not readable JSON: {e}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("entries"), dict):
        raise ValueError(f"tuning cache {str(path)!r} is not a schema-{SCHEMA} liquidgemm tuning cache; "
                         "delete it or re-run `liquidgemm tune`")
    return data


def save_cache(path: str | os.PathLike, entries: dict[str, dict], meta: dict) -> Path:
    """Merge `entries` into the cache file at `path` (new measurements replace old ones for the same key) and
    write it atomically (a concurrent reader sees the old or the new file, never half of one)."""
    path = Path(path)
    data = load_cache(path)
    data["meta"] = {**data.get("meta", {}), **meta}
    data["entries"].update(entries)
    # grouped by problem (n, k, group, out), then by m: easy to read and to diff
    data["entries"] = dict(sorted(data["entries"].items(), key=lambda kv: _problem_then_m(kv[0])))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
