"""RLlib checkpoints as bytes: pack a saved checkpoint into a deterministic tar.gz, and
restore the RLModule from those bytes without Ray running.

By default only the RLModule part (``learner_group/learner/rl_module``: weights and
spaces) is packed; the full algorithm checkpoint also holds optimizer and env-runner state.
:func:`restore_module` reads either layout.
"""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from clm_assets.models.base import ModelError
from clm_assets.models.ray_session import QuietLoggers

MODULE_SUBDIR = "learner_group/learner/rl_module/default_policy"
"""Where ``algo.save_to_path`` puts the single-agent RLModule inside a checkpoint."""
PACKED_MODULE_ROOT = "learner_group/learner/rl_module"
"""The directory packed when only the RLModule is kept."""


def pack_checkpoint(checkpoint: Path, *, full: bool) -> bytes:
    """tar.gz of a checkpoint saved by ``algo.save_to_path``: the whole directory when
    ``full``, else only its RLModule part (:data:`PACKED_MODULE_ROOT`)."""
    if not (checkpoint / MODULE_SUBDIR).is_dir():
        raise ModelError(f"ppo: checkpoint has no RLModule at {MODULE_SUBDIR}")
    return _pack(checkpoint if full else checkpoint / PACKED_MODULE_ROOT)


def restore_module(blob: bytes) -> Any:
    """The RLModule (in eval mode) from bytes made by :func:`pack_checkpoint`."""
    try:
        from ray.rllib.core.rl_module.rl_module import RLModule
    except ImportError as exc:  # pragma: no cover
        raise ModelError(f"ppo: ray[rllib] is not importable: {exc}") from exc
    tmp = tempfile.mkdtemp(prefix="clmppo_ck")
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")
        root = Path(tmp)
        candidates = [root / MODULE_SUBDIR, root / "default_policy"]
        path = next((c for c in candidates if c.is_dir()), None)
        if path is None:
            raise ModelError("ppo: bytes hold no RLModule checkpoint")
        with QuietLoggers("ray", "ray.rllib"):  # RLlib warns about its own deprecated ctor
            module = RLModule.from_checkpoint(str(path))
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"ppo: cannot restore the RLModule: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    module.eval()
    return module


def _pack(root: Path) -> bytes:
    """Deterministic tar.gz of a directory (sorted names, zeroed times and owners)."""
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in sorted(root.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(root).as_posix())
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path.is_file():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    return buf.getvalue()
