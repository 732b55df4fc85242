"""Build the optional C accelerators; everything else is declared in pyproject.toml.

All three extensions are optional: where no C compiler is available the build
warns and mmaplog runs on its pure-Python paths, which write and read the
same bytes (the tests check both), without the SIGBUS guard of ``_sigbus``
(see docs/RELIABILITY.md).
"""

from setuptools import Extension, setup

_FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]

setup(
    ext_modules=[
        Extension("mmaplog._cwrite", ["mmaplog/_cwrite.c"], optional=True, extra_compile_args=_FLAGS,
                  depends=["mmaplog/_checksum.h", "mmaplog/_layout.h", "mmaplog/_slot.h", "mmaplog/_emitter.h",
                           "mmaplog/_located.h"]),
        # The async handler's native queue and worker thread (writes slots without the GIL).
        Extension("mmaplog._casync", ["mmaplog/_casync.c"], optional=True, extra_compile_args=_FLAGS,
                  depends=["mmaplog/_checksum.h", "mmaplog/_layout.h", "mmaplog/_slot.h", "mmaplog/_emitter.h"]),
        Extension("mmaplog._cread", ["mmaplog/_cread.c"], optional=True, extra_compile_args=_FLAGS,
                  depends=["mmaplog/_checksum.h", "mmaplog/_layout.h"]),
        Extension("mmaplog._cstdlib", ["mmaplog/_cstdlib.c"], optional=True, extra_compile_args=_FLAGS,
                  depends=["mmaplog/_located.h"]),
        # The SIGBUS guard: used by both write paths (MMAPLOG_PURE_PYTHON=1 turns off only the two above).
        Extension("mmaplog._sigbus", ["mmaplog/_sigbus.c"], optional=True, extra_compile_args=_FLAGS),
    ],
)
