import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("FACECLUSTER_BUILD", ROOT / "build"))
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def fc_bin():
    path = BUILD / "facecluster"
    if not path.exists():
        pytest.skip(f"{path} not built")
    return str(path)


def run(fc_bin, *args, check=True):
    proc = subprocess.run([fc_bin, "-q", *map(str, args)], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"facecluster {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def fails(fc, *args, fragment):
    """Runs facecluster expecting exit 1 with one last line `facecluster: error: ...` holding fragment."""
    proc = fc(*args, check=False)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("facecluster: error: "), proc.stderr
    assert fragment in lines[-1], proc.stderr
    assert len(lines[-1]) < 600, lines[-1]
    return lines[-1]


@pytest.fixture
def fc(fc_bin):
    return lambda *args, check=True: run(fc_bin, *args, check=check)
