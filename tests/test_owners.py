"""One owner per fact: the level scale, the process name, the drop tally, the default tree's setup."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import mmaplog
from mmaplog import _levels, _lifecycle, _process, config, logger, reader, writer
from mmaplog._queue import Tally
from mmaplog.handlers import _format


def test_levels_have_one_owner() -> None:
    """reader, logger and the package hand on the objects of _levels, not copies."""
    assert reader.level_name is _levels.level_name and reader.level_number is _levels.level_number
    assert reader.LEVEL_NAMES is _levels.LEVEL_NAMES
    assert mmaplog.level_name is _levels.level_name
    for name in ("NOTSET", "TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        assert getattr(logger, name) == getattr(_levels, name) == _levels.level_number(name)
        assert _levels.level_name(getattr(_levels, name)) == name


def test_process_name_has_one_owner() -> None:
    """The writer's old private name is the owner's function."""
    assert writer._process_name is _process.process_name
    assert _process.process_name()


def test_a_tally_counts_every_add_while_readers_read() -> None:
    """Reads in between (which take values from the same count) never change what is counted."""
    tally = Tally()
    adders, per_adder = 4, 20_000
    start = threading.Barrier(adders + 1)
    seen: list[int] = []

    def add() -> None:
        start.wait()
        for _ in range(per_adder):
            tally.add()

    threads = [threading.Thread(target=add) for _ in range(adders)]
    for thread in threads:
        thread.start()
    start.wait()
    while any(thread.is_alive() for thread in threads):
        seen.append(tally.value)
    for thread in threads:
        thread.join()
    assert seen == sorted(seen)  # never goes back
    assert tally.value == tally.value == adders * per_adder


def test_fork_hooks_of_the_handlers_are_registered_with_lifecycle() -> None:
    """_lifecycle knows no handler module: the handlers register their fork hooks with it."""
    assert _format.after_fork_in_child in _lifecycle._child_hooks


def test_config_registers_the_environment_step_on_the_default_tree() -> None:
    """The logger module runs what config registered; mmaplog.get_logger is the configured one."""
    assert config.configure_from_environment in logger._Default.setup
    assert mmaplog.get_logger is logger.get_logger is config.get_logger


def test_mmaplog_config_applies_through_the_package_entry_alone(tmp_path: Path) -> None:
    """A program that only calls mmaplog.get_logger (no configure) gets the file MMAPLOG_CONFIG names."""
    ring = tmp_path / "env.mmlog"
    conf = tmp_path / "env.toml"
    conf.write_text(f'level = "DEBUG"\n[[handlers]]\ntype = "ring"\npath = "{ring}"\nsize = "64 KiB"\n')
    code = textwrap.dedent(
        """
        import sys, mmaplog
        assert "mmaplog.config" not in sys.modules
        mmaplog.get_logger("env").debug("from the environment")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "MMAPLOG_CONFIG": str(conf)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [(r.logger, r.message) for r in mmaplog.read(ring)] == [("env", "from the environment")]


def test_the_logger_module_alone_says_when_it_cannot_read_mmaplog_config(tmp_path: Path) -> None:
    """Without mmaplog.config (which reads the file), the default tree says so on stderr instead of ignoring it."""
    conf = tmp_path / "env.toml"
    conf.write_text('level = "DEBUG"\n')
    code = "from mmaplog.logger import get_logger\nget_logger('alone').warning('still shown')\n"
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "MMAPLOG_CONFIG": str(conf)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "MMAPLOG_CONFIG is set but mmaplog.config was not imported" in proc.stderr
    assert "still shown" in proc.stderr
