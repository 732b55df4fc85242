"""Ring files as a pandas DataFrame or an Arrow table, built from the reader's columns.

:func:`read_arrow` and :func:`read_dataframe` read like :func:`mmaplog.read_array`
(every file merged in order, sealed segments included) and hand numeric
columns over as whole numpy arrays: no Python object is made per number or
time.  pyarrow and pandas are optional (``pip install 'mmaplog[arrow]'``,
``'mmaplog[pandas]'``) and imported only when these functions are called.

Columns, in order:

==============  ==============================  ===================================
column          Arrow type                      pandas dtype
==============  ==============================  ===================================
``time``        ``timestamp[ns, tz=UTC]``       ``datetime64[ns, UTC]``
``seq``         ``uint64``                      ``uint64``
``level``       ``uint8`` (the number)          ``uint8``
``level_name``  ``dictionary<string>``          ``category``
``logger``      ``dictionary<string>``          ``category``
``message``     ``string``                      strings
``fields``      ``string`` (JSON object, null)  ``dict`` objects (None without)
``exception``   ``string`` (null without)       strings (None/NaN without)
``thread``      ``uint64``                      ``uint64``
``pid``         ``uint32``                      ``uint32``
``truncated``   ``bool``                        ``bool``
``host``        ``dictionary<string>``          ``category``
``process``     ``dictionary<string>``          ``category``
``source``      ``dictionary<string>``          ``category`` (the file's path)
==============  ==============================  ===================================

``fields`` is JSON text in Arrow, so a table of many services with different
keys keeps one schema and SQL engines query it directly (DuckDB:
``fields->>'user'``); in pandas it is the decoded dict of each record (pass
``fields="json"`` for the JSON text).  What the read found besides records
(loss, damage: :class:`mmaplog.ReadStats`) travels with the result: in the
Arrow schema's metadata under ``mmaplog.stats`` (JSON) and in the DataFrame's
``attrs["mmaplog_stats"]``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from . import layout as L
from ._json import json_value
from .integrations import require
from .reader import Paths, Scan, filter_mask, level_name, scan

if TYPE_CHECKING:
    import pandas
    import pyarrow

__all__ = ["COLUMNS", "read_arrow", "read_dataframe"]

#: The columns of both results, in order.
COLUMNS = ("time", "seq", "level", "level_name", "logger", "message", "fields", "exception", "thread", "pid",
           "truncated", "host", "process", "source")

#: Schema metadata key of the read's counts (JSON of :class:`mmaplog.ReadStats`).
STATS_KEY = b"mmaplog.stats"


def _scan(paths: Paths, segments: bool, min_level: int | str, logger: str | None, since_ns: int | None,
          until_ns: int | None) -> Scan:
    result = scan(paths, segments=segments)
    if min_level or logger or since_ns is not None or until_ns is not None:
        mask = filter_mask(result.records, min_level=min_level, logger=logger, since_ns=since_ns, until_ns=until_ns)
        result.records = result.records[mask]
    return result


def _json_fields(fields: np.ndarray) -> list[str | None]:
    """Each record's fields as compact JSON text (None for a record without fields)."""
    return [json_value(f) if f else None for f in fields.tolist()]


def _level_codes(levels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The level numbers as codes into the sorted list of names of the levels present."""
    present = np.unique(levels)
    return np.searchsorted(present, levels).astype(np.int16), [level_name(int(v)) for v in present.tolist()]


def _file_meta(result: Scan) -> tuple[list[str], list[str], list[str]]:
    hosts = [f.header.hostname for f in result.files]
    processes = [f.header.process_name for f in result.files]
    sources = [str(f.path) for f in result.files]
    return hosts, processes, sources


def _stats_json(result: Scan) -> str:
    return json.dumps(dataclasses.asdict(result.stats), separators=(",", ":"))


# Twin: read_arrow and read_dataframe repeat mmaplog.read()'s keyword signature on purpose (the public API mirrors
# it); the filtering itself is reader.filter_mask, shared.
def read_arrow(
    paths: Paths,
    *,
    segments: bool = True,
    min_level: int | str = 0,
    logger: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
) -> pyarrow.Table:
    """Every record of ``paths`` as a :class:`pyarrow.Table` (columns: :data:`COLUMNS`), optionally filtered.

    The filters are those of :func:`mmaplog.read`.  Needs ``pyarrow``
    (``pip install 'mmaplog[arrow]'``).
    """
    pa = require("pyarrow", "arrow")
    result = _scan(paths, segments, min_level, logger, since_ns, until_ns)
    rows = result.records
    hosts, processes, sources = _file_meta(result)
    file_index = pa.array(rows["file"].astype(np.int32))
    codes, names = _level_codes(rows["level"])

    def per_file(values: list[str]) -> Any:
        return pa.DictionaryArray.from_arrays(file_index, pa.array(values, type=pa.string()))

    columns = {
        "time": pa.array(rows["time_ns"].astype(np.int64), type=pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
        "seq": pa.array(rows["seq"]),
        "level": pa.array(rows["level"]),
        "level_name": pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(names, type=pa.string())),
        "logger": pa.array(rows["logger"], type=pa.string()).dictionary_encode(),
        "message": pa.array(rows["message"], type=pa.string()),
        "fields": pa.array(_json_fields(rows["fields"]), type=pa.string()),
        "exception": pa.array(rows["exception"], type=pa.string()),
        "thread": pa.array(rows["thread"]),
        "pid": pa.array(rows["pid"]),
        "truncated": pa.array((rows["flags"] & L.FLAG_TRUNCATED) != 0),
        "host": per_file(hosts),
        "process": per_file(processes),
        "source": per_file(sources),
    }
    table = pa.table(columns)
    return table.replace_schema_metadata({STATS_KEY: _stats_json(result).encode()})


# Twin: mmaplog.read()'s keyword signature, as read_arrow (above).
def read_dataframe(
    paths: Paths,
    *,
    segments: bool = True,
    min_level: int | str = 0,
    logger: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    fields: Literal["dict", "json"] = "dict",
) -> pandas.DataFrame:
    """Every record of ``paths`` as a :class:`pandas.DataFrame` (columns: :data:`COLUMNS`), optionally filtered.

    ``fields="dict"`` keeps each record's fields as a dict (None without),
    ``"json"`` as JSON text.  The filters are those of :func:`mmaplog.read`.
    Needs ``pandas`` (``pip install 'mmaplog[pandas]'``).
    """
    if fields not in ("dict", "json"):
        raise ValueError(f"fields must be 'dict' or 'json', not {fields!r}")
    pd = require("pandas", "pandas")
    result = _scan(paths, segments, min_level, logger, since_ns, until_ns)
    rows = result.records
    hosts, processes, sources = _file_meta(result)
    file_codes = rows["file"].astype(np.int32)
    codes, names = _level_codes(rows["level"])

    def categories(values: np.ndarray) -> Any:
        return pd.Categorical(values) if len(values) else pd.Categorical([], categories=[])

    def per_file(values: list[str]) -> Any:
        unique = list(dict.fromkeys(values))
        where = np.array([unique.index(v) for v in values], dtype=np.int32)
        return pd.Categorical.from_codes(where[file_codes] if len(values) else file_codes, categories=unique)

    if fields == "json":
        field_column: Any = np.array(_json_fields(rows["fields"]), dtype=object)
    else:
        field_column = rows["fields"].copy()
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime(rows["time_ns"].astype(np.int64), unit="ns", utc=True),
            "seq": rows["seq"].copy(),
            "level": rows["level"].copy(),
            "level_name": pd.Categorical.from_codes(codes, categories=names),
            "logger": categories(rows["logger"]),
            "message": rows["message"].copy(),
            "fields": field_column,
            "exception": rows["exception"].copy(),
            "thread": rows["thread"].copy(),
            "pid": rows["pid"].copy(),
            "truncated": (rows["flags"] & L.FLAG_TRUNCATED) != 0,
            "host": per_file(hosts),
            "process": per_file(processes),
            "source": per_file(sources),
        },
        columns=list(COLUMNS),
    )
    frame.attrs["mmaplog_stats"] = dataclasses.asdict(result.stats)
    return frame
