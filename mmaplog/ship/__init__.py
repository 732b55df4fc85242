"""Shipping ring files to a log collector: ``mmaplog-ship`` and the pieces it is built from.

* :mod:`mmaplog.ship.relp`: a small RELP client (rsyslog's ``imrelp``), with
  per-message acknowledgements and a window of unacknowledged messages.
* :mod:`mmaplog.ship.syslog`: RFC 5424 messages with the record's fields in
  STRUCTURED-DATA, and RFC 6587 octet-counting framing for TCP.
* :mod:`mmaplog.ship.cursor`: the atomic, per-series position of the last
  acknowledged record, so a restarted shipper resumes where it stopped.
* :mod:`mmaplog.ship.cli`: the ``mmaplog-ship`` command.

The logging process itself never touches the network: it writes to its ring,
and this separate process forwards what was written.
"""

from __future__ import annotations

from .cursor import Cursor, CursorError, load_cursor, save_cursor
from .relp import RelpClient, RelpConnectionLost, RelpError, RelpProtocolError
from .syslog import SyslogFormatter, octet_frame, severity

__all__ = [
    "Cursor",
    "CursorError",
    "RelpClient",
    "RelpConnectionLost",
    "RelpError",
    "RelpProtocolError",
    "SyslogFormatter",
    "load_cursor",
    "octet_frame",
    "save_cursor",
    "severity",
]
