"""What a new user meets first: the README's example, the demo's hint, the version line, start-up, Ctrl-C,
packaging, error names and the default text line."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import mmaplog
from mmaplog import RingWriter, _native
from mmaplog.cli._output import short_thread

ROOT = Path(__file__).resolve().parent.parent
BUILT = all(importlib.util.find_spec(f"mmaplog.{name}") is not None for name in ("_cwrite", "_cread"))
#: This run asks for the pure-Python paths (children inherit that unless a test says otherwise).
PURE = os.environ.get("MMAPLOG_PURE_PYTHON", "") not in ("", "0")
#: The C accelerators are in use in children that keep this environment.
NATIVE = BUILT and not PURE


def child_env(**changes: str | None) -> dict[str, str]:
    """The environment of a child Python: this one, with ``changes`` applied (None removes a variable)."""
    env = {k: v for k, v in os.environ.items() if k != "MMAPLOG_REQUIRE_NATIVE"}
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_python(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, env=env or child_env(), cwd=cwd
    )


def ring_with_records(path: Path, count: int = 3) -> Path:
    with RingWriter(path, size="1 MiB") as ring:
        for i in range(count):
            ring.write(f"record {i}", level=20, logger="app")
    return path


# ---------------------------------------------------------------------- accelerators: visible
def test_version_says_which_accelerators_are_in_use_without_importing_numpy() -> None:
    """``mmaplog-read --version``: the version, the accelerators' state, and no numpy (or reader) imported."""
    proc = run_python("-X", "importtime", "-m", "mmaplog.cli.read", "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"mmaplog-read {mmaplog.__version__}\n")
    assert "C accelerators:" in proc.stdout and "_cwrite" in proc.stdout and "_cread" in proc.stdout
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "numpy" not in imported and "mmaplog.reader" not in imported and "mmaplog.writer" not in imported
    if NATIVE:
        assert "C accelerators: on" in proc.stdout


@pytest.mark.parametrize("args", [["--help"], [], ["--level", "loud", "x.mmlog"]], ids=["help", "usage", "bad-level"])
def test_help_and_usage_errors_do_not_import_numpy(args: list[str]) -> None:
    code = "import sys, runpy; sys.argv = ['mmaplog-read', *sys.argv[1:]]\ntry:\n    runpy.run_module('mmaplog.cli.read', run_name='__main__')\nexcept SystemExit as exc:\n    print('numpy' in sys.modules, exc.code)\n"
    proc = run_python("-c", code, *args)
    seen_numpy, status = proc.stdout.split()[-2:]
    assert status == ("0" if args == ["--help"] else "2")
    # A bad --level is checked by the reader's level table, which lives beside numpy: only --help and a
    # missing argument must answer without it.
    if args != ["--level", "loud", "x.mmlog"]:
        assert seen_numpy == "False"


def test_version_says_disabled_by_the_environment() -> None:
    proc = run_python("-m", "mmaplog.cli.read", "--version", env=child_env(MMAPLOG_PURE_PYTHON="1"))
    assert proc.returncode == 0
    assert "C accelerators: off" in proc.stdout
    # every accelerator but the SIGBUS guard, which has no pure-Python twin and stays on
    assert proc.stdout.count("disabled by MMAPLOG_PURE_PYTHON=1") == len(_native.ROLES) - 1
    assert "_sigbus  on" in proc.stdout


_BLOCK_CWRITE = """
import importlib.abc, sys
class NotBuilt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "mmaplog._cwrite":
            raise ImportError("No module named 'mmaplog._cwrite'", name=name)
        return None
sys.meta_path.insert(0, NotBuilt())
"""


def test_a_missing_build_is_reported_as_not_built() -> None:
    """An accelerator that cannot be imported shows as ``not built`` with the import error, the others as on."""
    code = _BLOCK_CWRITE + "import mmaplog\nfor a in mmaplog.accelerators(): print(a.name, a.active, a.reason)\n"
    proc = run_python("-c", code, env=child_env(MMAPLOG_PURE_PYTHON=None))
    assert proc.returncode == 0, proc.stderr
    status = {line.split(" ", 2)[0]: line.split(" ", 2)[1:] for line in proc.stdout.splitlines()}
    assert status["_cwrite"][0] == "False" and status["_cwrite"][1].startswith("not built (")
    assert status["_cread"][0] == str(BUILT)


def test_a_missing_build_is_an_import_error_when_required() -> None:
    """``MMAPLOG_REQUIRE_NATIVE=1``: ``import mmaplog`` itself fails on a missing build, naming the module."""
    proc = run_python("-c", _BLOCK_CWRITE + "import mmaplog\n", env=child_env(MMAPLOG_REQUIRE_NATIVE="1", MMAPLOG_PURE_PYTHON=None))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("ImportError: MMAPLOG_REQUIRE_NATIVE is set but mmaplog._cwrite: not built")
    both = child_env(MMAPLOG_REQUIRE_NATIVE="1", MMAPLOG_PURE_PYTHON="1")  # turned off on purpose: no error
    assert run_python("-c", _BLOCK_CWRITE + "import mmaplog\nmmaplog.RingWriter\n", env=both).returncode == 0


def test_a_missing_build_does_not_warn_at_import() -> None:
    """The documented decision: no warning at import (``python -m mmaplog`` and ``--version`` say it)."""
    code = _BLOCK_CWRITE + "import mmaplog\nmmaplog.get_logger('x')\nmmaplog.RingWriter\n"
    proc = run_python("-W", "error", "-c", code)
    assert proc.returncode == 0 and proc.stderr == ""


def test_python_m_mmaplog_summarises_and_fails_when_a_path_is_pure() -> None:
    pure = run_python("-m", "mmaplog", env=child_env(MMAPLOG_PURE_PYTHON="1"))
    assert pure.returncode == 1
    assert f"mmaplog {mmaplog.__version__}" in pure.stdout and "C accelerators: off" in pure.stdout
    assert "MMAPLOG_PURE_PYTHON=1" in pure.stdout
    if BUILT:
        native = run_python("-m", "mmaplog", env=child_env(MMAPLOG_PURE_PYTHON=None))
        assert native.returncode == 0 and "C accelerators: on" in native.stdout


def test_accelerators_is_public_and_typed() -> None:
    status = mmaplog.accelerators()
    assert {a.name for a in status} == {"_cwrite", "_cread", "_cstdlib", "_casync", "_sigbus"}
    assert all(isinstance(a, mmaplog.Accelerator) and a.reason for a in status)
    assert all(a.active == (NATIVE or a.name == "_sigbus") for a in status)  # MMAPLOG_PURE_PYTHON leaves the guard on


# ---------------------------------------------------------------------- start-up: lazy, quiet on Ctrl-C
def test_import_mmaplog_loads_numpy_only_when_needed() -> None:
    code = "import sys, mmaplog\nprint('numpy' in sys.modules)\nmmaplog.read_array\nprint('numpy' in sys.modules)\n"
    assert run_python("-c", code).stdout.split() == ["False", "True"]


def test_submodules_stay_reachable_as_attributes() -> None:
    code = "import mmaplog\nprint(mmaplog.reader.read is mmaplog.read, mmaplog.layout.FORMAT_VERSION == mmaplog.FORMAT_VERSION)\n"
    assert run_python("-c", code).stdout.split() == ["True", "True"]
    # ``follow`` names both a function and its submodule: importing the submodule keeps the function public.
    code = "import mmaplog.follow, mmaplog, sys\nprint(callable(mmaplog.follow), mmaplog.follow is sys.modules['mmaplog.follow'].follow)\n"
    assert run_python("-c", code).stdout.split() == ["True", "True"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mmaplog.nope  # noqa: B018 - the attribute lookup is the test


# The child sends itself SIGINT at a chosen point of start-up: while Python imports ``target``.
_INTERRUPT_AT = """
import builtins, os, signal, sys
target, entry, args = sys.argv[1], sys.argv[2], sys.argv[3:]
real_import = builtins.__import__
def hooked(name, *a, **k):
    if name == target:
        builtins.__import__ = real_import
        os.kill(os.getpid(), signal.SIGINT)
    return real_import(name, *a, **k)
builtins.__import__ = hooked
sys.argv = ["mmaplog-read", *args]
if entry == "script":
    from mmaplog.cli import read_main
    read_main()
else:
    import runpy
    runpy.run_module("mmaplog.cli.read", run_name="__main__")
"""


@pytest.mark.parametrize("entry", ["script", "module"])
@pytest.mark.parametrize(
    ("target", "version"),
    [("argparse", True), ("numpy", False), ("_native", True), ("_output", False)],
    ids=["argparse", "numpy", "native", "output"],
)
def test_ctrl_c_during_start_up_exits_130_without_a_traceback(
    tmp_path: Path, entry: str, target: str, version: bool
) -> None:
    path = ring_with_records(tmp_path / "a.mmlog")
    args = ["--version"] if version else [str(path)]
    if entry == "module" and target == "argparse":
        pytest.skip("python -m imports the module (and argparse) before main() runs")
    proc = run_python("-c", _INTERRUPT_AT, target, entry, *args)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == ""


def test_ctrl_c_while_listing_exits_130_without_a_traceback(tmp_path: Path) -> None:
    """SIGINT while records are being written to a pipe nobody reads: status 130, nothing on stderr."""
    path = tmp_path / "big.mmlog"
    with RingWriter(path, size="4 MiB") as ring:
        for i in range(10_000):
            ring.write(f"record {i} " + "x" * 100, level=20, logger="app")
    script = Path(sys.executable).parent / "mmaplog-read"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "mmaplog.cli.read"]
    proc = subprocess.Popen([*command, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.read(1)  # it has started writing; the pipe fills and it blocks there
    assert first
    proc.send_signal(2)
    stderr = proc.stderr.read()
    proc.stdout.close()
    assert proc.wait(timeout=60) == 130
    assert stderr == b""


# ---------------------------------------------------------------------- packaging
def test_package_metadata_builds_without_warnings(tmp_path: Path) -> None:
    """The SPDX license and license-files build with no deprecation warning and land in the metadata."""
    import setuptools

    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} predates PEP 639 (the 'test' extra installs >= 77)")
    code = (
        "import os, sys, setuptools.build_meta as b\n"
        "out = sys.argv[1]  # setuptools rewrites sys.argv\n"
        "name = b.prepare_metadata_for_build_wheel(out)\n"
        "with open(os.path.join(out, name, 'METADATA')) as f:\n    print(f.read())\n"
    )
    proc = run_python("-W", "error", "-c", code, str(tmp_path), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "License-Expression: MIT" in proc.stdout
    assert "License-File: LICENSE" in proc.stdout
    assert "Warning" not in proc.stderr
    assert "mmaplog contributors" in (ROOT / "LICENSE").read_text()


def test_virtual_environments_made_by_ci_are_ignored() -> None:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for name in (".venv-3.10/", ".venv-3.13/bin/python", ".venv/"):
        assert subprocess.run([git, "-C", str(ROOT), "check-ignore", "-q", name]).returncode == 0, name


# ---------------------------------------------------------------------- errors and the first example
def test_public_exceptions_are_named_from_the_package() -> None:
    for cls in (mmaplog.MmaplogError, mmaplog.ConfigError, mmaplog.FormatError, mmaplog.WriterBusyError):
        assert cls.__module__ == "mmaplog"
        assert repr(cls) == f"<class 'mmaplog.{cls.__name__}'>"
    error = pickle.loads(pickle.dumps(mmaplog.ConfigError("level: unknown level 'LOUD'")))
    assert isinstance(error, mmaplog.ConfigError) and str(error) == "level: unknown level 'LOUD'"
    proc = run_python("-c", "import mmaplog\nmmaplog.configure(level='LOUD')\n")
    assert proc.stderr.strip().splitlines()[-1].startswith("mmaplog.ConfigError: ")


def test_file_handler_creates_missing_parent_directories(tmp_path: Path) -> None:
    target = tmp_path / "var" / "log" / "myapp" / "app-{pid}.log"
    handler = mmaplog.FileHandler(target)
    try:
        mmaplog.Logger("app", handlers=[handler]).info("hello")
    finally:
        handler.close()
    assert (tmp_path / "var" / "log" / "myapp" / f"app-{os.getpid()}.log").read_text().endswith("hello\n")


def test_file_handler_names_the_directory_it_could_not_create() -> None:
    # /proc refuses new directories even to root, unlike a directory without write permission.
    if not Path("/proc/self").exists():
        pytest.skip("needs /proc")
    with pytest.raises(OSError, match=re.escape("/proc/mmaplog-missing/app.log: cannot create its directory /proc/mmaplog-missing")):
        mmaplog.FileHandler("/proc/mmaplog-missing/app.log")


def readme_first_example() -> str:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)[0]


def test_readme_first_example_runs_where_its_directory_does_not_exist(tmp_path: Path) -> None:
    """The README's first example, as printed, in a fresh directory where /var/log/myapp is missing."""
    example = readme_first_example()
    assert "/var/log/myapp/" in example
    root = tmp_path / "root"
    code = example.replace("/var/log/myapp/", f"{root}/var/log/myapp/")
    proc = run_python("-c", code, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rings = list((root / "var" / "log" / "myapp").glob("app-*.mmlog"))
    assert len(rings) == 1
    assert [r.message for r in mmaplog.read(rings[0])][-1] == "could not compute"


# ---------------------------------------------------------------------- the demo's closing hint
def test_demo_hint_runs_as_printed_without_an_activated_environment(tmp_path: Path) -> None:
    """The command the demo prints at the end works in a shell whose PATH does not hold the venv."""
    env = child_env(PATH="/usr/bin:/bin")
    proc = run_python(str(ROOT / "tools" / "demo.py"), str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stderr
    hint = proc.stdout.rstrip("\n").splitlines()[-1]
    command = hint.split("try:", 1)[1].strip()
    assert command.endswith(" -o json")
    shown = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=60, env=env)
    assert shown.returncode == 0, shown.stderr
    messages = [json.loads(line)["message"] for line in shown.stdout.splitlines()]
    assert "could not price the basket" in messages
    assert shlex.split(command)[0] != "mmaplog-read"  # not on this PATH, so it must be spelled out


def test_the_reader_runs_as_a_module(tmp_path: Path) -> None:
    path = ring_with_records(tmp_path / "a.mmlog")
    proc = run_python("-m", "mmaplog.cli.read", str(path), "-o", "json")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 3


# ---------------------------------------------------------------------- the default text line
def test_text_line_shows_a_short_thread_tag_and_json_the_full_ident(tmp_path: Path) -> None:
    path = tmp_path / "a.mmlog"
    with RingWriter(path, size="1 MiB") as ring:
        ring.write("main thread", level=20, logger="app")
        worker = threading.Thread(target=lambda: ring.write("worker thread", level=20, logger="app"))
        worker.start()
        worker.join()
    text = run_python("-m", "mmaplog.cli.read", str(path)).stdout.splitlines()
    objects = [json.loads(x) for x in run_python("-m", "mmaplog.cli.read", str(path), "-o", "json").stdout.splitlines()]
    assert len(text) == len(objects) == 2
    assert objects[0]["thread"] == threading.get_ident() and objects[1]["thread"] != objects[0]["thread"]
    for line, obj in zip(text, objects):
        assert f" app [{short_thread(obj['thread'])}] {obj['message']}" in line
        assert str(obj["thread"]) not in line and str(obj["pid"]) not in line


def test_short_thread_tags_are_short_stable_and_spread() -> None:
    # Thread idents on Linux are stack addresses a few pages apart: their tags must still differ.
    idents = [0x7F0000000740 + i * 0x801000 for i in range(64)]
    tags = [short_thread(i) for i in idents]
    assert all(re.fullmatch(r"[0-9a-f]{4}", t) for t in tags)
    assert len(set(tags)) == len(tags)
    assert short_thread(139714757372800) == short_thread(139714757372800)


def test_text_line_shows_the_pid_when_processes_are_merged(tmp_path: Path) -> None:
    here = ring_with_records(tmp_path / "here.mmlog", 2)
    child = run_python(
        "-c",
        "import sys, mmaplog\nwith mmaplog.RingWriter(sys.argv[1], size='1 MiB') as r: r.write('from the child', level=20, logger='app')\n",
        str(tmp_path / "child.mmlog"),
    )
    assert child.returncode == 0, child.stderr
    merged = run_python("-m", "mmaplog.cli.read", str(here), str(tmp_path / "child.mmlog")).stdout.splitlines()
    objects = [
        json.loads(x)
        for x in run_python("-m", "mmaplog.cli.read", str(here), str(tmp_path / "child.mmlog"), "-o", "json").stdout.splitlines()
    ]
    assert len(merged) == len(objects) == 3 and len({o["pid"] for o in objects}) == 2
    for line, obj in zip(merged, objects):
        assert f" app [{obj['pid']}/{short_thread(obj['thread'])}] {obj['message']}" in line
    alone = run_python("-m", "mmaplog.cli.read", str(here)).stdout
    assert f"[{os.getpid()}/" not in alone


def test_python_m_mmaplog_in_a_clone_without_builds_says_why(tmp_path: Path) -> None:
    """`python -m mmaplog` run inside a clone after `pip install .` imports the clone's sources, which have no
    builds: the reason names the source tree and the two ways out, instead of only "not built"."""
    clone = tmp_path / "clone"
    shutil.copytree(Path(mmaplog.__file__).parent, clone / "mmaplog",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    (clone / "pyproject.toml").write_text("[project]\nname = 'mmaplog'\n")
    # -S: no site-packages, so neither an installed copy nor an editable install's finder supplies the builds
    proc = run_python("-S", "-m", "mmaplog", cwd=clone, env=child_env(MMAPLOG_PURE_PYTHON=None, PYTHONPATH=None))
    assert proc.returncode == 1, proc.stderr
    assert f"at {clone / 'mmaplog'}" in proc.stdout and "not built" in proc.stdout
    assert f"this is the source tree at {clone / 'mmaplog'}" in proc.stdout
    assert "pip install -e ." in proc.stdout


def test_python_m_mmaplog_into_a_closed_pipe_prints_no_traceback() -> None:
    """`python -m mmaplog | head -1`: the reader's end is gone before the summary is written; no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "mmaplog"], stdout=write_end, stderr=subprocess.PIPE, text=True,
                              timeout=120, env=child_env())
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr and proc.stderr == "", proc.stderr
