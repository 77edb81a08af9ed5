"""Same data + params + seed give the same model bytes, in another process too (invariant 6).

A model's version is sha256 of its bytes, and the registry keeps a decided status (the
champion's PRODUCTION) only for the same version: anything in the bytes that varies between
two fits (a timing, a file mtime, a temp path, a set pickled in hash order) would make every
retraining of the champion's partition dethrone it. Each family is fitted here and in a
fresh interpreter with another ``PYTHONHASHSEED``, tiny for speed.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from clm_assets.models.families import FAMILIES, model_class
from clm_assets_tests.factories import FAST_PARAMS, simple_feature_frame

HORIZON = 4
SEED = 5
REPO = Path(__file__).parents[2]


def fit_bytes(family: str) -> bytes:
    """The bytes of one tiny fit of ``family`` on a fixed frame with :data:`SEED`."""
    frame = simple_feature_frame(400, seed=2, horizon=HORIZON)
    model = model_class(family)(FAST_PARAMS[family], seed=SEED)
    model.fit(frame, HORIZON)
    return model.to_bytes()


def write_all(folder: str) -> None:
    """Entry point of the other process: one ``<family>.bin`` per family in ``folder``."""
    for family in FAMILIES:
        Path(folder, f"{family}.bin").write_bytes(fit_bytes(family))


@pytest.fixture(scope="module")
def other_process(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every family fitted in a fresh interpreter (its own hash seed and temp dirs)."""
    out = tmp_path_factory.mktemp("other-process")
    env = {
        **os.environ,
        "PYTHONHASHSEED": "4242",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    code = (
        f"from clm_assets_tests.models.test_determinism import write_all; write_all({str(out)!r})"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=out, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _members(payload: bytes) -> dict[str, tuple] | None:
    """Header fields and content of each member of a tar payload; None if not a tar."""
    try:
        with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
            return {
                m.name: (
                    (m.mtime, m.uid, m.gid, m.mode, m.pax_headers),
                    tar.extractfile(m).read() if m.isfile() else b"",
                )
                for m in tar.getmembers()
            }
    except tarfile.TarError:
        return None


def _differences(a: bytes, b: bytes) -> list[str]:
    """Where two model blobs differ: the card, or the header / content of a tar member."""
    (na,) = struct.unpack(">I", a[:4])
    (nb,) = struct.unpack(">I", b[:4])
    found = []
    if a[4 : 4 + na] != b[4 : 4 + nb]:
        found.append(f"card: {a[4 : 4 + na][:300]!r} vs {b[4 : 4 + nb][:300]!r}")
    ma, mb = _members(a[4 + na :]), _members(b[4 + nb :])
    if ma is None or mb is None:
        return [*found, "payload"] if a[4 + na :] != b[4 + nb :] else found
    if list(ma) != list(mb):
        found.append(f"members {list(ma)} vs {list(mb)}")
    for name in sorted(set(ma) & set(mb)):
        for part, x, y in zip(("header", "content"), ma[name], mb[name], strict=True):
            if x != y:
                found.append(f"{name}: {part}")
    return found or ["tar framing"]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_same_seed_gives_the_same_bytes_in_another_process(
    family: str, other_process: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    here = fit_bytes(family)
    there = (other_process / f"{family}.bin").read_bytes()
    assert here == there, _differences(here, there)
