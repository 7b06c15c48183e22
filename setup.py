"""Build of the bce_fast extension.

One Cython module (bce_fast/_core.pyx) linked with the C kernels in csrc/.
The kernels are compiled once per instruction set inside their own
translation units (csrc/bf_isa_*.c use `#pragma GCC target`), so the default
build needs no -march flag and runs on any x86-64; the best level is picked at
import.  Never add fast-math, O-fast or march-native flags here: fast-math breaks the
rounding trick and NaN handling of csrc/bf_math.h and, with gcc, links
crtfastmath.o, which turns on flush-to-zero for the whole Python process.

Environment switches:
  BCE_FAST_NO_OPENMP=1   build without OpenMP (single-threaded kernels)
  BCE_FAST_DEBUG=1       Cython bounds/wraparound checks and -O0 -g
  BCE_FAST_SANITIZE=1    -fsanitize=address,undefined (see README, Reliability)
"""
import glob
import os
import subprocess
import sys
import sysconfig
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup


def _compiler_accepts(flags):
    """Compile and link a small OpenMP program with `flags`."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    src = "#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.c")
        with open(path, "w") as f:
            f.write(src)
        cmd = cc.split() + [path, "-o", os.path.join(tmp, "probe")] + flags
        try:
            return subprocess.run(cmd, capture_output=True).returncode == 0
        except OSError:
            return False


def _openmp_flags():
    if os.environ.get("BCE_FAST_NO_OPENMP") == "1":
        return [], []
    if sys.platform == "darwin" and _compiler_accepts(["-Xpreprocessor", "-fopenmp", "-lomp"]):
        return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
    if _compiler_accepts(["-fopenmp"]):
        return ["-fopenmp"], ["-fopenmp"]
    print("bce_fast: OpenMP not found, building single-threaded kernels", file=sys.stderr)
    return [], []


debug = os.environ.get("BCE_FAST_DEBUG") == "1"
sanitize = os.environ.get("BCE_FAST_SANITIZE") == "1"
omp_compile, omp_link = _openmp_flags()

# -std=c11 alone turns FMA contraction off; contraction is not fast-math
# (one rounding instead of two, no reassociation) and is worth ~1.5x.
compile_args = ["-std=c11", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=fast",
                "-Werror=implicit-function-declaration"]
compile_args += ["-O0", "-g"] if debug else ["-O3"]
if not omp_compile:
    compile_args.append("-fopenmp-simd")   # `#pragma omp simd` without the runtime
link_args = list(omp_link)
if sanitize:
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    compile_args += san
    link_args += san

ext = Extension(
    "bce_fast._core",
    sources=[
        "bce_fast/_core.pyx",
        "csrc/bf_runtime.c",
        "csrc/bf_softmax.c",
        "csrc/bf_isa_baseline.c",
        "csrc/bf_isa_avx2.c",
        "csrc/bf_isa_avx512.c",
    ],
    include_dirs=["csrc", np.get_include()],
    # Kernel bodies live in headers: a header change must rebuild the objects.
    depends=sorted(glob.glob("csrc/*.h")) + ["bce_fast/_softmax.pxi", "bce_fast/_outcache.pxi"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
    extra_compile_args=compile_args + omp_compile,
    extra_link_args=link_args,
)

directives = {
    "language_level": 3,
    "boundscheck": debug,
    "wraparound": debug,
    "cdivision": True,
    "initializedcheck": debug,
}

setup(ext_modules=cythonize([ext], compiler_directives=directives))
