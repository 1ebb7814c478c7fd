"""Builds the Python module's C++ extension with the project's own CMake build.

The CMake build folder is `build/` (the README's) when it was configured for a Python of this
interpreter's ABI, else `build-python-<ABI tag>/`; FACECLUSTER_BUILD_DIR names another. Only the
extension target is built, so a built `build/` makes `pip install .` take seconds.
"""
import importlib.util
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent

# Offline, with --no-build-isolation, the building interpreter must already have these; say so
# in one line instead of pip's "invalid command 'bdist_wheel'" or a failed download.
_missing = [m for m in ("wheel", "numpy") if importlib.util.find_spec(m) is None]
if _missing:
    sys.exit(f"facecluster: error: {sys.executable} has no {' and no '.join(_missing)}; install them into it, "
             "or make a venv that sees Debian's (python3-numpy, python3-wheel): "
             "/usr/bin/python3 -m venv --system-site-packages VENV")
(ROOT / "build").mkdir(exist_ok=True)  # egg_info writes its metadata there, before any build


def project_version():
    text = (ROOT / "CMakeLists.txt").read_text()
    return re.search(r"project\(facecluster VERSION ([0-9.]+)", text).group(1)


def cached(build_dir, name):
    cache = build_dir / "CMakeCache.txt"
    if not cache.exists():
        return None
    m = re.search(rf"^{name}:[A-Z]+=(.*)$", cache.read_text(), re.M)
    return m.group(1) if m else None


def choose_build_dir(soabi):
    if os.environ.get("FACECLUSTER_BUILD_DIR"):
        return Path(os.environ["FACECLUSTER_BUILD_DIR"]).resolve()
    default = ROOT / "build"
    if cached(default, "CMAKE_HOME_DIRECTORY") is None or cached(default, "FACECLUSTER_PYTHON_SOABI") == soabi:
        return default
    return ROOT / f"build-python-{soabi}"


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        soabi = sysconfig.get_config_var("SOABI")
        build_dir = choose_build_dir(soabi)
        # The interpreter itself, not a venv's link to it: the build folder outlives venvs.
        python = getattr(sys, "_base_executable", None) or sys.executable
        configure = ["cmake", "-S", str(ROOT), "-B", str(build_dir), "-DFACECLUSTER_BUILD_PYTHON=ON"]
        if cached(build_dir, "CMAKE_HOME_DIRECTORY") is None:
            configure += ["-DCMAKE_BUILD_TYPE=Release", "-DFACECLUSTER_BUILD_TESTS=OFF", "-DFACECLUSTER_BUILD_BENCH=OFF",
                          f"-DPython3_EXECUTABLE={python}"]
            if shutil.which("ninja"):
                configure += ["-G", "Ninja"]
        elif cached(build_dir, "FACECLUSTER_PYTHON_SOABI") != soabi:
            configure.append(f"-DPython3_EXECUTABLE={python}")
        print(f"facecluster: building the extension for {sys.executable} ({soabi}) in {build_dir}", flush=True)
        if cached(build_dir, "FACECLUSTER_BUILD_PYTHON") != "ON" or cached(build_dir, "FACECLUSTER_PYTHON_SOABI") != soabi:
            subprocess.run(configure, check=True)
        jobs = os.environ.get("JOBS") or str(multiprocessing.cpu_count())
        subprocess.run(["cmake", "--build", str(build_dir), "--target", "_core", "-j", jobs], check=True)
        built = list((build_dir / "python" / "facecluster").glob("_core*.so"))
        if len(built) != 1:
            sys.exit(f"facecluster: error: expected one _core*.so in {build_dir / 'python' / 'facecluster'}, found {len(built)}")
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built[0], target)


setup(
    version=project_version(),
    package_dir={"": "src/python"},
    packages=["facecluster"],
    package_data={"facecluster": ["__init__.pyi", "py.typed"]},
    ext_modules=[Extension("facecluster._core", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    options={"build": {"build_base": "build/setuptools"}, "egg_info": {"egg_base": "build"}},
    zip_safe=False,
)
