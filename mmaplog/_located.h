/* The C writer's entry for one record with pre-encoded fields, as mmaplog/_cstdlib.c calls it.
 *
 * mmaplog._cwrite publishes one MmaplogLocatedApi in the capsule LOCATED_API_CAPSULE; the source-location
 * paths of mmaplog._cstdlib (accelerated stdlib loggers with capture_source, SourceEmitter) import it and
 * call append_fields directly, with no Python call, when a ring handler's ``_append_fields`` is a C
 * writer's (``Appender.append_fields``).  Declarations only: include <Python.h> first.
 */
#ifndef MMAPLOG_LOCATED_H
#define MMAPLOG_LOCATED_H

#define LOCATED_API_CAPSULE "mmaplog._cwrite._located_api"
#define LOCATED_API_VERSION 1

typedef struct {
    int version;                 /* LOCATED_API_VERSION */
    PyTypeObject *appender_type; /* the writer's Appender (its module's; borrowed: the capsule holds the module) */
    PyCFunction method;          /* Appender.append_fields: what a bound ``_append_fields`` must be to be called here */
    /* One record: ``msg % args`` (msg alone when nargs is 0; msg an exact str), ``level``, ``logger`` and the
     * fields as the writer encodes them (``fields_json``, bytes), with FLAG_FIELDS.  A one-slot record is
     * written in C; anything rare goes to the writer's Python path with its fields.  Returns the record's seq
     * (0: lost and counted), NotImplemented (a new reference) when nargs > 0 and the C formatter leaves the
     * text to ``msg % args`` (call again with the rendered text and nargs 0), or NULL with an exception set
     * (only what the Python path let through: KeyboardInterrupt and the like). */
    PyObject *(*append_fields)(PyObject *appender, PyObject *msg, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *level, PyObject *logger, PyObject *fields_json);
} MmaplogLocatedApi;

#endif /* MMAPLOG_LOCATED_H */
