"""configure(): keyword arguments, dicts, TOML files, MMAPLOG_CONFIG, and every kind of bad configuration."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import mmaplog
from mmaplog import ConfigError, ConsoleHandler, FileHandler, RingHandler, configure
from mmaplog.config import HandlerOptions, register_handler_type
from mmaplog.handlers import Handler
from mmaplog.logger import LoggerTree
from mmaplog.testing import CapturingHandler


@pytest.fixture()
def tree() -> Any:
    """A logger tree of its own, so the process-wide one stays untouched."""
    fresh = LoggerTree()
    yield fresh
    configure(tree=fresh, handlers=[])


def test_keyword_arguments_set_up_the_root(tree: LoggerTree, tmp_path: Path) -> None:
    """Level and handler tables given as keywords build the handlers and set the root's level."""
    root = configure(tree=tree, level="DEBUG", handlers=[
        {"type": "ring", "path": str(tmp_path / "app.mmlog"), "size": "256 KiB", "slot_size": 128},
        {"type": "console", "level": "ERROR", "format": "{level} {message}"},
    ])
    assert root is tree.root and root.level == 10
    ring, console = root.own_handlers
    assert isinstance(ring, RingHandler) and isinstance(console, ConsoleHandler)
    assert ring.writer is not None and ring.writer.slot_size == 128 and console.level == 40
    tree.get("app").debug("through the tree", k=1)
    ring.close()
    assert [(r.logger, r.message, r.fields) for r in mmaplog.read(tmp_path / "app.mmlog")] == [
        ("app", "through the tree", {"k": 1})
    ]


def test_a_dict_with_named_handlers_and_logger_settings(tree: LoggerTree, tmp_path: Path) -> None:
    """Loggers get levels, propagation and handlers referenced by name."""
    configure({
        "level": "WARNING",
        "handlers": [{"type": "file", "name": "db", "path": str(tmp_path / "db.log"), "format": "{logger} {message}"}],
        "loggers": {"app.db": {"level": "DEBUG", "handlers": ["db"], "propagate": False}},
    }, tree=tree)
    tree.get("app.db.pool").debug("query")
    tree.get("app.web").info("not at WARNING")
    assert (tmp_path / "db.log").read_text() == "app.db.pool query\n"
    assert tree.root.own_handlers[0] is tree.get("app.db").own_handlers[0]


def test_handler_objects_may_be_given_directly(tree: LoggerTree) -> None:
    """Handler objects pass through unchanged and are not closed by the next configure()."""
    capture = CapturingHandler()
    configure(tree=tree, handlers=[capture], level="INFO")
    tree.get("x").info("hello")
    configure(tree=tree, handlers=[])
    tree.get("x").info("after")
    assert [r.message for r in capture.records] == ["hello"]


def test_a_toml_file(tree: LoggerTree, tmp_path: Path) -> None:
    """A TOML file with handlers and loggers configures the tree like the equivalent dict."""
    ring = tmp_path / "app.mmlog"
    conf = tmp_path / "logging.toml"
    conf.write_text(textwrap.dedent(f"""
        level = "INFO"

        [[handlers]]
        type = "ring"
        path = "{ring}"
        size = "128 KiB"
        rotate = 2

        [loggers."app.noisy"]
        level = "ERROR"
    """))
    configure(conf, tree=tree)
    tree.get("app.noisy").warning("muted")
    tree.get("app.noisy").error("kept")
    tree.get("app").info("kept too")
    handler = tree.root.own_handlers[0]
    assert isinstance(handler, RingHandler) and handler.writer is not None and handler.writer.rotate == 2
    handler.close()
    assert [r.message for r in mmaplog.read(ring)] == ["kept", "kept too"]


def test_the_tool_table_of_a_pyproject_file(tree: LoggerTree, tmp_path: Path) -> None:
    """A pyproject.toml's [tool.mmaplog] table is the configuration."""
    conf = tmp_path / "pyproject.toml"
    conf.write_text('[project]\nname = "x"\n\n[tool.mmaplog]\nlevel = "ERROR"\n')
    configure(conf, tree=tree)
    assert tree.root.level == 40


_ENV_CHILD = textwrap.dedent(
    """
    import mmaplog
    log = mmaplog.get_logger("app.env")
    log.debug("configured by the environment", source="env")
    mmaplog.configure()          # no arguments: the same file again
    log.info("and again")
    """
)


def test_mmaplog_config_names_the_file_to_load(tmp_path: Path) -> None:
    """A program that never calls configure() with arguments is set up from the file MMAPLOG_CONFIG names."""
    ring = tmp_path / "env.mmlog"
    conf = tmp_path / "env.toml"
    conf.write_text(f'level = "DEBUG"\n[[handlers]]\ntype = "ring"\npath = "{ring}"\nsize = "64 KiB"\n')
    env = {**os.environ, "MMAPLOG_CONFIG": str(conf)}
    proc = subprocess.run([sys.executable, "-c", _ENV_CHILD], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [(r.logger, r.level_name, r.message, r.fields) for r in mmaplog.read(ring)] == [
        ("app.env", "DEBUG", "configured by the environment", {"source": "env"}),
        ("app.env", "INFO", "and again", {}),
    ]


def test_a_bad_mmaplog_config_file_fails_with_the_variable_named(tmp_path: Path) -> None:
    """A bad file named by MMAPLOG_CONFIG stops the program with one message naming variable, file and key."""
    conf = tmp_path / "bad.toml"
    conf.write_text('level = "LOUD"\n')
    env = {**os.environ, "MMAPLOG_CONFIG": str(conf)}
    proc = subprocess.run([sys.executable, "-c", _ENV_CHILD], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("mmaplog.ConfigError: MMAPLOG_CONFIG=") and str(conf) in last
    assert "level: unknown level 'LOUD'" in last


BAD_CASES = [
    ({"handlers": [{"type": "rng", "path": "x"}]}, "handlers[0].type: unknown handler type 'rng'"),
    ({"handlers": [{"path": "x"}]}, "handlers[0].type: required"),
    ({"handlers": [{"type": "console"}, {"type": "ring", "path": "R", "size": -5}]},
     "handlers[1].size: must be a positive size (like 65536 or '64 MiB'), got -5"),
    ({"handlers": [{"type": "ring", "path": "R", "size": "lots"}]}, "handlers[0].size: must be a positive size"),
    ({"handlers": [{"type": "ring", "path": "R", "slot_size": 100}]}, "handlers[0].slot_size: must be a multiple of 8"),
    ({"handlers": [{"type": "ring", "path": "R", "slot_size": 32}]}, "handlers[0].slot_size: must be between"),
    ({"handlers": [{"type": "ring", "path": "R", "rotate": -1}]}, "handlers[0].rotate: must be >= 0, got -1"),
    ({"handlers": [{"type": "ring"}]}, "handlers[0].path: required"),
    ({"handlers": [{"type": "ring", "path": "R", "sise": 5}]}, "handlers[0].sise: unknown key"),
    ({"handlers": [{"type": "console", "level": "LOUD"}]}, "handlers[0].level: unknown level 'LOUD'"),
    ({"handlers": [{"type": "console", "stream": "stdnowhere"}]}, "handlers[0].stream: must be one of"),
    ({"handlers": [{"type": "console", "format": "{nope}"}]}, "handlers[0].format: format '{nope}': unknown field"),
    ({"handlers": [{"type": "file", "path": "F", "mode": "rw"}]}, "handlers[0].mode: must be a permission mode"),
    ({"handlers": {"type": "console"}}, "handlers: must be a list of handlers"),
    ({"level": "LOUD"}, "level: unknown level 'LOUD'"),
    ({"level": 300}, "level: level 300 is out of range 0..255"),
    ({"colour": True}, "colour: unknown key"),
    ({"capture_uncaught": "yes"}, "capture_uncaught: must be true or false, got 'yes'"),
    ({"loggers": {"app": {"level": "LOUD"}}}, "loggers.app.level: unknown level 'LOUD'"),
    ({"loggers": {"app.db": {"handlers": ["nope"]}}}, "loggers.\"app.db\".handlers[0]: no handler is named 'nope'"),
    ({"loggers": {"app": {"lvl": 1}}}, "loggers.app.lvl: unknown key"),
    ({"handlers": [{"type": "console", "name": "a"}, {"type": "console", "name": "a"}]},
     "handlers[1].name: must be a unique"),
]


BAD_IDS = [f"{message.split(':')[0]}-{i}" for i, (_, message) in enumerate(BAD_CASES)]


@pytest.mark.parametrize(("config", "message"), BAD_CASES, ids=BAD_IDS)
def test_bad_configuration_fails_naming_the_key_and_changes_nothing(
    tree: LoggerTree, tmp_path: Path, config: dict[str, Any], message: str
) -> None:
    """Each bad configuration raises one ConfigError naming key and value, and the previous setup stays."""
    before = CapturingHandler()
    configure(tree=tree, handlers=[before], level="INFO")
    for spec in config.get("handlers", []) if isinstance(config.get("handlers"), list) else []:
        for key in ("path",):
            if key in spec:
                spec[key] = str(tmp_path / spec[key])
    with pytest.raises(ConfigError) as caught:
        configure(config, tree=tree)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
    assert tree.root.own_handlers == (before,) and tree.root.level == 20
    assert not list(tmp_path.glob("R*"))  # nothing half-built was left open


def test_a_bad_toml_file_is_named_in_the_error(tree: LoggerTree, tmp_path: Path) -> None:
    """Invalid TOML, a missing file and a bad key in a file all name the file."""
    broken = tmp_path / "broken.toml"
    broken.write_text("level = \n")
    with pytest.raises(ConfigError, match=r"broken\.toml: invalid TOML"):
        configure(broken, tree=tree)
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read"):
        configure(tmp_path / "missing.toml", tree=tree)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[[handlers]]\ntype = "ring"\npath = "x"\nsize = -5\n')
    with pytest.raises(ConfigError, match=r"wrong\.toml: handlers\[0\]\.size: must be a positive size"):
        configure(wrong, tree=tree)


def test_missing_toml_support_says_to_install_tomli(tree: LoggerTree, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Without tomllib (Python 3.10) and without tomli, the error says which package to install."""
    monkeypatch.setitem(sys.modules, "tomllib", None)
    monkeypatch.setitem(sys.modules, "tomli", None)
    conf = tmp_path / "a.toml"
    conf.write_text('level = "INFO"\n')
    with pytest.raises(ConfigError, match=r"a\.toml: reading TOML needs the 'tomli' package.*mmaplog\[toml\]"):
        configure(conf, tree=tree)


def test_reconfiguring_closes_what_the_last_configure_built(tree: LoggerTree, tmp_path: Path) -> None:
    """A second configure() carries a ring it names again over, and closes what it no longer names."""
    spec = {"type": "ring", "path": str(tmp_path / "a.mmlog"), "size": "64 KiB"}
    configure(tree=tree, handlers=[spec, {"type": "file", "path": str(tmp_path / "a.log")}])
    first, text = tree.root.own_handlers
    configure(tree=tree, handlers=[spec])
    assert tree.root.own_handlers == (first,)
    assert isinstance(first, RingHandler) and first.writer is not None and not first.writer.closed
    assert isinstance(text, FileHandler) and text._closed
    configure(tree=tree, handlers=[{"type": "file", "path": str(tmp_path / "a.log")}])
    assert first.closed and first.writer is not None and first.writer.closed
    assert isinstance(tree.root.own_handlers[0], FileHandler)


def test_registered_handler_types_are_built_by_name(tree: LoggerTree) -> None:
    """register_handler_type() adds a type whose factory reads its own keys with checked getters."""
    made: list[Handler] = []

    def factory(options: HandlerOptions) -> Handler:
        handler = CapturingHandler(level=options.level())
        options.integer("capacity", 10, minimum=1)
        made.append(handler)
        return handler

    register_handler_type("memory", factory)
    configure(tree=tree, handlers=[{"type": "memory", "level": "ERROR", "capacity": 3}])
    assert tree.root.own_handlers == tuple(made) and made[0].level == 40
    with pytest.raises(ConfigError, match=r"handlers\[0\]\.capacity: must be >= 1, got 0"):
        configure(tree=tree, handlers=[{"type": "memory", "capacity": 0}])


def test_the_async_type_wraps_nested_handlers(tree: LoggerTree, tmp_path: Path) -> None:
    """``type = "async"`` builds the async handler around nested handler tables, imported on first use."""
    pytest.importorskip("mmaplog.handlers.async_")
    configure(tree=tree, handlers=[{"type": "async", "handlers": [
        {"type": "ring", "path": str(tmp_path / "a.mmlog"), "size": "64 KiB"}]}])
    handler = tree.root.own_handlers[0]
    assert type(handler).__name__ == "AsyncHandler"
    tree.get("app").warning("through the queue")
    handler.flush()
    assert [r.message for r in mmaplog.read(tmp_path / "a.mmlog")] == ["through the queue"]
    with pytest.raises(ConfigError, match=r"handlers\[0\]\.handlers\[0\]\.size: must be a positive size"):
        configure(tree=tree, handlers=[{"type": "async", "handlers": [{"type": "ring", "path": "x", "size": 0}]}])


# ---------------------------------------------------------------------- reconfiguration as a transaction
class Gated(Handler):
    """Holds every batch until ``gate`` opens; remembers what it got and whether anything came after close()."""

    def __init__(self, gate: Any = None) -> None:
        super().__init__()
        import threading

        self.gate = gate
        self.entered = threading.Event()
        self.messages: list[str] = []
        self.closed_at: int | None = None
        self.after_close = 0

    def emit(self, record: Any) -> None:
        self.emit_batch([record])

    def emit_batch(self, records: list[Any]) -> None:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30)
        if self.closed_at is not None:
            self.after_close += len(records)
        self.messages.extend(r.message for r in records)

    def close(self) -> None:
        if self.closed_at is None:
            self.closed_at = len(self.messages)


def test_a_refused_reload_leaves_the_running_set_up_exactly_as_it_was(tree: LoggerTree, tmp_path: Path) -> None:
    """A reload that fails validation opens nothing it keeps, closes nothing, changes no level: logging goes on."""
    path = tmp_path / "app.mmlog"
    ring_spec = {"type": "ring", "path": str(path), "size": "1 MiB", "level": "INFO"}
    configure(tree=tree, level="INFO", handlers=[ring_spec, {"type": "file", "path": str(tmp_path / "a.log")}])
    before = tree.root.own_handlers
    log = tree.get("app")
    log.info("before")
    bad = [dict(ring_spec, level="ERROR"), {"type": "file", "path": str(tmp_path / "b.log")},
           {"type": "console", "colour": "purple"}]
    with pytest.raises(ConfigError, match=r"handlers\[2\]\.colour"):
        configure(tree=tree, level="DEBUG", handlers=bad)
    assert tree.root.own_handlers == before and tree.root.level == 20
    ring, text = before
    assert isinstance(ring, RingHandler) and not ring.closed and ring.level == 20
    assert isinstance(text, FileHandler) and not text._closed
    assert not (tmp_path / "b.log").exists() or (tmp_path / "b.log").read_text() == ""
    for i in range(100):
        log.info("after %d", i)
    assert [r.message for r in mmaplog.read(path)] == ["before"] + [f"after {i}" for i in range(100)]
    assert len((tmp_path / "a.log").read_text().splitlines()) == 101


def test_a_ring_named_again_is_carried_over_and_gets_its_new_level_at_the_switch(tree: LoggerTree,
                                                                                  tmp_path: Path) -> None:
    """The same ring path with the same settings keeps the open handler (its lock), with the new level."""
    path = tmp_path / "app.mmlog"
    spec = {"type": "ring", "path": str(path), "size": "64 KiB"}
    configure(tree=tree, level="DEBUG", handlers=[spec])
    (first,) = tree.root.own_handlers
    tree.get("app").debug("one")
    configure(tree=tree, level="DEBUG", handlers=[dict(spec, level="INFO")])
    assert tree.root.own_handlers == (first,) and first.level == 20
    tree.get("app").debug("not written")
    tree.get("app").info("two")
    assert [r.message for r in mmaplog.read(path)] == ["one", "two"]


def test_a_ring_open_with_other_settings_is_refused_naming_the_key(tree: LoggerTree, tmp_path: Path) -> None:
    """Changing the size of a ring that stays open is a ConfigError; the running ring keeps working."""
    path = tmp_path / "app.mmlog"
    configure(tree=tree, handlers=[{"type": "ring", "path": str(path), "size": "64 KiB"}])
    (ring,) = tree.root.own_handlers
    with pytest.raises(ConfigError, match=r"handlers\[0\]\.size: the ring .* is open in the running configuration"):
        configure(tree=tree, handlers=[{"type": "ring", "path": str(path), "size": "128 KiB"}])
    assert tree.root.own_handlers == (ring,) and isinstance(ring, RingHandler) and not ring.closed
    tree.get("app").warning("still here")
    assert [r.message for r in mmaplog.read(path)] == ["still here"]


def test_a_failed_build_closes_what_it_made_but_not_the_ring_it_took_over(tree: LoggerTree, tmp_path: Path) -> None:
    """A new async front around the running ring, refused later in the table: the front closes, the ring stays."""
    path = tmp_path / "app.mmlog"
    spec = {"type": "ring", "path": str(path), "size": "64 KiB"}
    configure(tree=tree, handlers=[spec])
    (ring,) = tree.root.own_handlers
    with pytest.raises(ConfigError, match=r"handlers\[1\]\.type"):
        configure(tree=tree, handlers=[{"type": "async", "handlers": [spec]}, {"type": "nonsense"}])
    assert isinstance(ring, RingHandler) and not ring.closed
    tree.get("app").warning("kept")
    assert [r.message for r in mmaplog.read(path)] == ["kept"]


@pytest.mark.parametrize("same_ring", [False, True])
def test_reconfiguring_drains_the_async_front_before_closing_what_it_feeds(tree: LoggerTree, tmp_path: Path,
                                                                           same_ring: bool) -> None:
    """Records still queued in the old async handler reach its inner handlers before they are closed."""
    import threading

    path = tmp_path / "app.mmlog"
    gate = threading.Event()
    sink = Gated(gate)
    spec = {"type": "ring", "path": str(path), "size": "4 MiB"}
    configure(tree=tree, handlers=[{"type": "async", "capacity": 100_000, "handlers": [spec, sink]}])
    log = tree.get("app")

    def produce(t: int) -> None:
        for i in range(2000):
            log.info("t%d %d", t, i)

    log.info("first")
    assert sink.entered.wait(30)  # the worker holds a batch: everything else stays queued
    threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (front,) = tree.root.own_handlers
    assert front.pending > 0
    opener = threading.Timer(0, gate.set)  # opens the gate once configure() is waiting for the drain
    opener.start()
    new = [spec] if same_ring else [{"type": "file", "path": str(tmp_path / "a.log")}]
    configure(tree=tree, handlers=new)
    opener.join()
    assert sink.closed_at == 8001 and sink.after_close == 0
    if same_ring:
        log.info("after")
    messages = [r.message for r in mmaplog.read(path)]
    assert sorted(messages) == sorted(["first"] + [f"t{t} {i}" for t in range(4) for i in range(2000)]
                                      + (["after"] if same_ring else []))


def test_a_ring_busy_in_another_process_says_to_put_pid_in_the_path(tmp_path: Path) -> None:
    """MMAPLOG_CONFIG naming a fixed ring path: a second process's get_logger() raises a ConfigError about {pid}."""
    conf = tmp_path / "mmaplog.toml"
    conf.write_text(f'[[handlers]]\ntype = "ring"\npath = "{tmp_path / "app.mmlog"}"\nsize = "64 KiB"\n')
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, mmaplog; mmaplog.get_logger('a').warning('first'); "
         "print('ready', flush=True); sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "MMAPLOG_CONFIG": str(conf)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        code = textwrap.dedent(
            """
            import mmaplog
            try:
                mmaplog.get_logger("b")
            except mmaplog.ConfigError as exc:
                print(exc)
            """
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "MMAPLOG_CONFIG": str(conf)})
    finally:
        if holder.stdin is not None:
            holder.stdin.close()
        holder.wait(60)
    assert proc.returncode == 0, proc.stderr
    assert "MMAPLOG_CONFIG=" in proc.stdout and "handlers[0].path" in proc.stdout
    assert "already open for writing" in proc.stdout and "{pid}" in proc.stdout
