"""The C modules: one layout header checked against layout.py, CPython's modern module style, subinterpreters.

``mmaplog/_layout.h`` restates the slot layout for C; every ``#define`` in it
is compared here with :mod:`mmaplog.layout`.  The three extensions use
multi-phase initialisation and declare ``Py_mod_multiple_interpreters``: each
imports (and works) in an isolated subinterpreter with its own GIL on 3.12+,
which refuses any module that does not support it.
"""

from __future__ import annotations

import gc
import importlib
import os
import re
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import pytest

import mmaplog
from mmaplog import layout as L

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mmaplog"
C_MODULES = ("_cwrite", "_cread", "_sigbus")


def _defines(path: Path) -> dict[str, int]:
    """Every ``#define NAME <integer>`` of a header (the include guard has no value and is left out)."""
    found: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#define"):
            continue
        match = re.fullmatch(r"#define\s+([A-Z0-9_]+)\s+(0x[0-9A-Fa-f]+|\d+)\s*(/\*.*\*/)?\s*", line)
        if match is None:
            assert re.fullmatch(r"#define\s+MMAPLOG_LAYOUT_H\s*", line), f"not a plain integer #define: {line!r}"
            continue
        found[match.group(1)] = int(match.group(2), 0)
    return found


def _expected_layout() -> dict[str, int]:
    expected = {
        "FORMAT_MAJOR": L.FORMAT_VERSION[0],
        "SLOT_HEADER_SIZE": L.SLOT_HEADER_SIZE,
        "SLOT_TRAILER_SIZE": L.SLOT_TRAILER_SIZE,
        "MIN_SLOT_SIZE": L.MIN_SLOT_SIZE,
        "MAX_SLOT_SIZE": L.MAX_SLOT_SIZE,
        "KNOWN_FLAGS": L.KNOWN_FLAGS,
    }
    for name in ("FIRST", "LAST", "FIELDS", "TRUNCATED", "INLINE_LOGGER", "EXCEPTION"):
        expected[f"FLAG_{name}"] = getattr(L, f"FLAG_{name}")
    fields = L.SLOT_DTYPE.fields
    assert fields is not None
    for field, (_, offset) in fields.items():
        if offset < L.SLOT_HEADER_SIZE:  # the header's fields (payload and trailer follow)
            expected[f"OFF_{field.upper()}"] = offset
    return expected


def test_the_layout_header_states_exactly_what_layout_py_says() -> None:
    """Each constant of _layout.h equals its layout.py value, and every header field has its offset there."""
    assert _defines(PACKAGE / "_layout.h") == _expected_layout()


@pytest.mark.parametrize("source", ["_cwrite.c", "_cread.c", "_casync.c", "_slot.h"])
def test_the_c_files_take_the_layout_from_the_header(source: Path) -> None:
    """No C file that touches slots defines a layout constant of its own; each includes the header."""
    text = (PACKAGE / source).read_text(encoding="utf-8")
    assert '#include "_layout.h"' in text
    own = set(re.findall(r"^#define\s+([A-Z0-9_]+)", text, re.M))
    assert not own & set(_expected_layout()), own & set(_expected_layout())


def test_one_checksum_implementation() -> None:
    """CRC-32 and adler32 live in _checksum.h only: no C file has a table or a loop of its own."""
    for source in ("_cwrite.c", "_cread.c", "_casync.c"):
        text = (PACKAGE / source).read_text(encoding="utf-8")
        assert '#include "_checksum.h"' in text
        assert "0xEDB88320" not in text and "65521" not in text


def _native(name: str) -> object:
    if os.environ.get("MMAPLOG_PURE_PYTHON", "") not in ("", "0") and name != "_sigbus":
        pytest.skip("accelerators off (MMAPLOG_PURE_PYTHON)")
    try:
        return importlib.import_module(f"mmaplog.{name}")
    except ImportError:
        pytest.skip(f"mmaplog.{name} is not built")


@pytest.mark.parametrize("name", C_MODULES)
def test_modules_use_multi_phase_init_and_heap_types(name: str) -> None:
    """A module's types are heap types, not subclassable, and belong to the module object that made them."""
    module = _native(name)
    assert module.__spec__ is not None  # type: ignore[attr-defined]
    for value in vars(module).values():
        if isinstance(value, type):
            assert value.__flags__ & (1 << 9), f"{value} is a static type"  # Py_TPFLAGS_HEAPTYPE
            with pytest.raises(TypeError):
                type("Sub", (value,), {})


def test_a_record_store_is_collected_in_a_reference_cycle(tmp_path: Path) -> None:
    """A RecordStore supports GC: a cycle through an object in its rows does not leak."""
    _native("_cread")
    from mmaplog._codec import accelerator

    if accelerator() is None:
        pytest.skip("the reader's accelerator is off")
    path = tmp_path / "gc.mmlog"
    with mmaplog.RingWriter(path, size=64 * 1024) as writer:
        writer.write("one")

    class Holder:
        store: object = None

    rows = mmaplog.read_array(path)
    store = rows.base
    while store is not None and type(store).__name__ != "RecordStore":
        store = getattr(store, "base", None)
    assert store is not None and gc.is_tracked(store)
    holder = Holder()
    holder.store = store  # the store owns a reference to holder through its row: a cycle
    rows["fields"][0] = holder
    probe = weakref.ref(holder)
    del rows, store, holder
    gc.collect()
    assert probe() is None


_SUB_SCRIPT = """
import sys
sys.path[:0] = {path!r}
import mmaplog._cwrite as w, mmaplog._cread as r, mmaplog._sigbus as g
assert w.FORMAT_MAJOR == {major} and r.LAYOUT["slot_header"] == {header} and g.MAX_REGIONS > 0
assert w.disabled(1, 2, x=3) is None
assert r.valid_mask(bytes({slot_size}), {slot_size}, 1, bytes(8)) == b"\\x00"  # a slot never written
got = []
class Ring:
    def _append(self, text, level, name):
        got.append((text, level, name))
emit = w.ring_emitter(Ring(), 20, "sub", lambda *args, **kwargs: got.append("fallback"))
emit("x=%d", 5)
assert got == [("x=5", 20, "sub")], got
g.install()
import mmaplog._native as n
off = {{a.name: a.reason for a in n.accelerators() if not a.active}}
assert set(off) <= {{"_casync", "_cstdlib"}}, off  # built, but they serve the main interpreter only
assert all("subinterpreter" in why for why in off.values()), off
"""


def _run_isolated(script: str) -> None:
    """Run ``script`` in a new isolated subinterpreter (own GIL, multi-phase modules only); raise on failure."""
    if sys.version_info >= (3, 13):
        import _interpreters

        interp = _interpreters.create("isolated")
        try:
            failure = _interpreters.exec(interp, script)
        finally:
            _interpreters.destroy(interp)
        assert failure is None, getattr(failure, "formatted", failure)
    else:
        import _xxsubinterpreters

        interp = _xxsubinterpreters.create(isolated=True)
        try:
            _xxsubinterpreters.run_string(interp, script)
        finally:
            _xxsubinterpreters.destroy(interp)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="per-interpreter GIL and Py_mod_multiple_interpreters: 3.12+")
def test_every_c_module_imports_and_works_in_an_isolated_subinterpreter() -> None:
    """All three modules load, twice, in subinterpreters that accept only modules declaring support."""
    for name in C_MODULES:
        _native(name)
    script = _SUB_SCRIPT.format(path=sys.path, major=L.FORMAT_VERSION[0], header=L.SLOT_HEADER_SIZE, slot_size=64)
    _run_isolated(script)
    _run_isolated(script)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="per-interpreter GIL: 3.12+")
def test_an_isolated_subinterpreter_refuses_a_single_phase_module() -> None:
    """The check above can fail: a module without multi-phase init does not import there."""
    single_phase = f"import sys\nsys.path[:0] = {sys.path!r}\nimport _testsinglephase\n"
    try:
        import _testsinglephase  # noqa: F401
    except ImportError:
        pytest.skip("_testsinglephase is not installed")
    with pytest.raises(BaseException):  # noqa: B017 - RunFailedError (3.12) or AssertionError (3.13)
        _run_isolated(single_phase)


def test_the_c_tests_pass_under_python_dev_mode(tmp_path: Path) -> None:
    """-X dev (debug allocators hooks, ResourceWarning, faulthandler): a write and a read through the C paths."""
    code = textwrap.dedent(
        f"""
        import mmaplog
        path = {str(tmp_path / "dev.mmlog")!r}
        with mmaplog.RingWriter(path, size=64 * 1024) as w:
            for i in range(100):
                w.write("record %d" % i, level=20, logger="dev")
        log = mmaplog.Logger("dev", handlers=[mmaplog.RingHandler({str(tmp_path / "l.mmlog")!r})])
        log.warning("x=%d", 1)
        assert [r.message for r in mmaplog.read(path)][-1] == "record 99"
        import gc; gc.collect()
        """
    )
    proc = subprocess.run([sys.executable, "-X", "dev", "-W", "error", "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
