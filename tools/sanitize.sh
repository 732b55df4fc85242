#!/usr/bin/env bash
# Run the C accelerators under AddressSanitizer and UndefinedBehaviorSanitizer.
#
#   tools/sanitize.sh [FUZZ_CASES]        (default 20000 fuzz cases; about 5 minutes)
#   SANITIZE_BITFLIP=1 tools/sanitize.sh  (and every bit of a small file flipped: 10 more minutes)
#   SANITIZE_TESTS="tests/test_x.py ..." SANITIZE_THREAD=0 tools/sanitize.sh 100   (a quick pass over some tests)
#
# Copies the working tree to a temporary folder, builds mmaplog/_cwrite.c,
# mmaplog/_cread.c, the async queue mmaplog/_casync.c, the stdlib accelerator mmaplog/_cstdlib.c and the SIGBUS
# guard mmaplog/_sigbus.c there with
# -fsanitize=address,undefined, preloads the sanitizer runtimes into the current Python, and runs the tests that exercise
# the C code plus the mutation fuzzer (tools/fuzz.py) against it.  Any invalid
# memory access or undefined behaviour aborts the run with a report.
# Needs gcc with libasan/libubsan; uses the Python on PATH (with pytest,
# hypothesis and numpy installed, as `pip install -e '.[test]'` gives).
set -euo pipefail
cases="${1:-20000}"
here="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cp -r "$here/mmaplog" "$here/tests" "$here/tools" "$here/pyproject.toml" "$work/"
find "$work/mmaplog" -name '*.so' -delete
include="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
suffix="$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
for module in _cwrite _cread _casync _cstdlib _sigbus; do
    gcc -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
        -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
        -fPIC -shared -I"$include" "$work/mmaplog/$module.c" -o "$work/mmaplog/$module$suffix"
done

# handle_sigbus=0: the tests check mmaplog's own SIGBUS handling, which ASan's handler would replace.
export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:handle_sigbus=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONPATH="$work" MMAPLOG_REQUIRE_NATIVE=1
cd "$work"
"$python" -c 'import mmaplog._cwrite, mmaplog._cread, mmaplog._casync, mmaplog._cstdlib, mmaplog._sigbus, sys; print("sanitized build:", mmaplog._cread.__file__, file=sys.stderr)'
# SANITIZE_TESTS: other test files for this pass (space-separated), e.g. only those a change touched.
# shellcheck disable=SC2086
"$python" -m pytest -q -p no:cacheprovider ${SANITIZE_TESTS:-tests/test_cwrite.py tests/test_cread.py tests/test_writer.py \
    tests/test_write_batch.py tests/test_reader.py tests/test_logger.py tests/test_async.py tests/test_hostile.py tests/test_guard.py \
    tests/test_cli.py tests/test_follow.py tests/test_async_native.py tests/test_stdlib_fast.py tests/test_located_c.py \
    tests/test_source_location.py tests/test_emitters.py}
"$python" tools/fuzz.py --cases "$cases" --cli-every 0 --memory-every 0 --seed-dir "$work/seeds"
if [ "${SANITIZE_BITFLIP:-0}" != 0 ]; then
    "$python" tools/fuzz.py --bitflip --seed-dir "$work/seeds-bitflip"
fi

# ThreadSanitizer over the async queue: its producer (under the GIL) and its worker thread (without it).
# Only _casync is instrumented; the GIL is a pthread mutex/condition, which TSan sees.
if [ "${SANITIZE_THREAD:-1}" != 0 ]; then
    unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS
    find "$work/mmaplog" -name '*.so' -delete
    # -Wno-tsan: TSan does not model the slot commit's release fences (the stores they order are atomic or
    # belong to the mapped file, which TSan does not track); the queue's own handshakes are atomics and locks.
    gcc -O1 -g -fno-omit-frame-pointer -fsanitize=thread -Wno-tsan -Wall -Wextra -Wno-unused-parameter \
        -Wno-missing-field-initializers -fPIC -shared -I"$include" "$work/mmaplog/_casync.c" \
        -o "$work/mmaplog/_casync$suffix"
    for module in _cwrite _cread _cstdlib _sigbus; do
        gcc -O2 -Wall -fPIC -shared -I"$include" "$work/mmaplog/$module.c" -o "$work/mmaplog/$module$suffix"
    done
    # TSan cannot follow a fork of a process with threads: the fork tests run in the ASan pass above.
    LD_PRELOAD="$(gcc -print-file-name=libtsan.so)" TSAN_OPTIONS=halt_on_error=1:report_signal_unsafe=0 \
        "$python" -m pytest -q -p no:cacheprovider tests/test_async_native.py -k "not fork"
fi
