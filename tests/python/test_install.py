"""The module installs for the interpreter the user runs (issue 40): pip into a fresh venv, and
cmake --install into the interpreter the build was configured for, at the place it prints."""
import os
import re
import subprocess

from conftest import BUILD, ROOT

SYSTEM_PYTHON = "/usr/bin/python3"
PROBE = """
import sys, numpy as np, facecluster
X, y = facecluster.synth(n=3000, dim=64, identities=30, seed=5)
labels = facecluster.cluster(X, k=30)
f = facecluster.evaluate(labels, y)["scores"]["pairwise_f"]
print(facecluster.__file__, facecluster.__version__, labels.shape[0], f)
"""


def project_version():
    return re.search(r"project\(facecluster VERSION ([0-9.]+)", (ROOT / "CMakeLists.txt").read_text()).group(1)


def probe(python, cwd, env=None):
    out = subprocess.run([python, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    path, version, n, f = out.stdout.split()
    return path, version, int(n), float(f)


def test_pip_install_into_a_fresh_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    # The README's command, offline; the C++ core comes from this suite's build folder.
    env = dict(os.environ, FACECLUSTER_BUILD_DIR=str(BUILD))
    env.pop("PYTHONPATH", None)
    got = subprocess.run([python, "-m", "pip", "install", "--no-build-isolation", "--no-index", "."], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=1200)
    assert got.returncode == 0, got.stdout[-3000:] + got.stderr[-3000:]
    # Imported from outside the source tree, it is the venv's copy, and it clusters.
    path, version, n, f = probe(python, tmp_path, env)
    assert path.startswith(str(venv)) and version == project_version()
    assert n == 3000 and f > 0.8
    # Not visible to the interpreter the venv was made from.
    plain = subprocess.run([SYSTEM_PYTHON, "-c", "import facecluster; print(facecluster.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60)
    assert plain.returncode != 0 or not plain.stdout.startswith(str(venv))


def test_cmake_install_goes_where_it_says(tmp_path):
    env = dict(os.environ, DESTDIR=str(tmp_path / "stage"))
    got = subprocess.run(["cmake", "--install", str(BUILD), "--component", "python"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert got.returncode == 0, got.stderr
    m = re.search(r"facecluster: Python module installed into (\S+) for (\S+)", got.stdout)
    assert m, got.stdout
    where, python = m.group(1), m.group(2)
    assert where.startswith(str(tmp_path / "stage")) and os.path.isfile(os.path.join(where, "__init__.py"))
    assert [f for f in os.listdir(where) if f.startswith("_core") and f.endswith(".so")]
    # The build's interpreter is the README's unless the build named another.
    configured = re.search(r"^Python3_EXECUTABLE:[A-Z]+=(.*)$", (BUILD / "CMakeCache.txt").read_text(), re.M)
    assert python == (configured.group(1) if configured else SYSTEM_PYTHON)
    # Its site-packages (as that interpreter reports it), under DESTDIR.
    platlib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('platlib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert where == str(tmp_path / "stage") + platlib + "/facecluster"
    env = dict(os.environ, PYTHONPATH=os.path.dirname(where))
    path, version, n, f = probe(python, tmp_path, env)
    assert path == os.path.join(where, "__init__.py") and version == project_version() and f > 0.8
