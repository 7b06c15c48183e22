#!/usr/bin/env bash
# Sanitizer run (issue 6): build the extension with
# -fsanitize=address,undefined (setup.py's BCE_FAST_SANITIZE=1) in a
# throwaway copy of the tree -- the checkout's own build/ and bce_fast/*.so
# are never touched -- and run the fast tests against that build, once per
# instruction-set level this CPU supports (BCE_FAST_ISA).  Any ASan report
# (out-of-bounds access, use after free) or UBSan report (UB aborts: the build
# uses -fno-sanitize-recover=undefined) fails the run.  A few minutes on
# 2 cores.
#
#   .ci/sanitize.sh                    # default subset
#   .ci/sanitize.sh tests/test_x.py    # other test files/args instead
#
# The Python interpreter is not built with ASan, so libasan is LD_PRELOADed
# (it must be the first library loaded), and leak detection is off: CPython
# keeps memory alive at exit on purpose and would drown real reports.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python}
cc=${CC:-$("$py" -c 'import sysconfig; print((sysconfig.get_config_var("CC") or "cc").split()[0])')}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bce_fast_sanitize.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Tracked and new (not ignored) files: the tree as it is, without build
# products (*.so, _core.c, build/ are ignored).
(cd "$here" && git ls-files -co --exclude-standard -z | tar --null -cf - -T -) | tar -xf - -C "$tmp"
cd "$tmp"

echo "sanitize: building in $tmp"
BCE_FAST_SANITIZE=1 "$py" setup.py -q build_ext --inplace >build.log 2>&1 || { cat build.log; exit 1; }
# (grep -c reads all of nm's output: grep -q would SIGPIPE nm under pipefail)
[ "$(nm -D bce_fast/_core*.so | grep -c __asan_init)" -gt 0 ] || { echo "sanitize: build is not instrumented" >&2; exit 1; }

libasan=$("$cc" -print-file-name=libasan.so)
[ -e "$libasan" ] || { echo "sanitize: $cc has no libasan.so" >&2; exit 1; }

# PyTorch's C++ exceptions abort the process when the ASan runtime is
# preloaded (seen with torch 2.13: Tensor.__array__ raising for a tensor that
# requires grad); hide torch so its tests skip via pytest.importorskip (which,
# since pytest 9.2, skips on ModuleNotFoundError only).
mkdir -p "$tmp/.no_torch/torch"
echo 'raise ModuleNotFoundError("torch is hidden in the sanitizer run (.ci/sanitize.sh)")' \
    >"$tmp/.no_torch/torch/__init__.py"
export PYTHONPATH="$tmp/.no_torch:$tmp" PYTHONDONTWRITEBYTECODE=1
# Reports also go to files: pytest captures stderr at the descriptor level,
# and a report that aborts the process would be lost with the capture.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:log_path=$tmp/asan
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$tmp/ubsan
# hypothesis: the bounded, derandomized profile unless the caller asks for more

run() { LD_PRELOAD="$libasan" "$py" "$@"; }

# The package imported must be the instrumented copy, not an editable install.
run -c "import bce_fast, sys; f = bce_fast._core.__file__; print('sanitize: using', f); sys.exit(not f.startswith('$tmp'))"

if [ $# -gt 0 ]; then
    tests=("$@")
else
    tests=(tests/test_bad_input.py tests/test_fuzz.py tests/test_threads.py
           tests/test_binary.py tests/test_binary_grad.py tests/test_softmax.py
           tests/test_softmax_grad.py)
    existing=()
    for t in "${tests[@]}"; do [ -e "$t" ] && existing+=("$t"); done
    tests=("${existing[@]}")
fi

levels=$(run -c "from bce_fast import _core; print(' '.join(l for l in _core.ISA_LEVELS if _core.isa_supported(l)))")
for isa in $levels; do
    echo "sanitize: BCE_FAST_ISA=$isa"
    BCE_FAST_ISA=$isa run -c "import bce_fast, sys; sys.exit(bce_fast.isa() != '$isa')"
    # (the oversubscription test samples thread states, which ASan's
    # slowdown makes meaningless; everything else runs)
    BCE_FAST_ISA=$isa run -m pytest -q -x -p no:cacheprovider -p no:warnings -m "not slow" \
        --durations=5 -k "not oversubscribe" "${tests[@]}" || {
        cat "$tmp"/asan.* "$tmp"/ubsan.* 2>/dev/null
        echo "sanitize: failed under BCE_FAST_ISA=$isa" >&2
        exit 1
    }
done
echo "sanitize: clean under: $levels"
