/* An accelerated level method's state, shared by the logger's emitters (mmaplog/_cwrite.c) and the async
 * handler's (mmaplog/_casync.c): the references it holds and its GC support, written once.
 *
 * A level method is a builtin function bound to an emitter object.  A module's Emitter type starts with
 * MMAPLOG_EMITTER_HEAD and adds only fields that hold no references; its PyType_Spec takes
 * MMAPLOG_EMITTER_SLOTS and Py_TPFLAGS_HAVE_GC.  A header only (static functions): each extension keeps
 * one copy.  Include <Python.h> first.
 */
#ifndef MMAPLOG_EMITTER_H
#define MMAPLOG_EMITTER_H

#define MMAPLOG_EMITTER_HEAD                                                                                     \
    PyObject_HEAD                                                                                               \
    PyObject *target;   /* where records go: _cwrite a RingHandler or handle(record), _casync its Queue */    \
    PyObject *level;    /* the level number (int) */                                                          \
    PyObject *name;     /* the logger's name (str) */                                                         \
    PyObject *fallback; /* the Python level method, for keyword arguments and anything unusual */            \
    PyObject *record;   /* _cwrite's record emitters: the record class; NULL otherwise */

typedef struct {
    MMAPLOG_EMITTER_HEAD
} MmaplogEmitter;

static int mmaplog_emitter_traverse(PyObject *op, visitproc visit, void *arg)
{
    MmaplogEmitter *self = (MmaplogEmitter *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->target);
    Py_VISIT(self->level);
    Py_VISIT(self->name);
    Py_VISIT(self->fallback);
    Py_VISIT(self->record);
    return 0;
}

static int mmaplog_emitter_clear(PyObject *op)
{
    MmaplogEmitter *self = (MmaplogEmitter *)op;
    Py_CLEAR(self->target);
    Py_CLEAR(self->level);
    Py_CLEAR(self->name);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->record);
    return 0;
}

static void mmaplog_emitter_dealloc(PyObject *op)
{
    PyTypeObject *type = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    (void)mmaplog_emitter_clear(op);
    type->tp_free(op);
    Py_DECREF(type); /* a heap type's instance holds a reference to it (taken by PyObject_GC_New) */
}

/* A new emitter of heap type ``type`` (as large as the module's Emitter) holding new references to its
 * arguments (``record`` may be NULL), not yet tracked: the caller fills in its own fields, then binds it
 * with mmaplog_emitter_bind.  NULL with an exception set on failure. */
static MmaplogEmitter *mmaplog_emitter_new(PyTypeObject *type, PyObject *target, PyObject *level, PyObject *name,
                                           PyObject *fallback, PyObject *record)
{
    MmaplogEmitter *self = PyObject_GC_New(MmaplogEmitter, type);
    if (self == NULL)
        return NULL;
    self->target = Py_NewRef(target);
    self->level = Py_NewRef(level);
    self->name = Py_NewRef(name);
    self->fallback = Py_NewRef(fallback);
    self->record = Py_XNewRef(record);
    return self;
}

/* The level method: ``def`` bound to ``self``, which it now owns (the caller's reference is given up). */
static PyObject *mmaplog_emitter_bind(MmaplogEmitter *self, PyMethodDef *def)
{
    PyObject_GC_Track((PyObject *)self);
    PyObject *method = PyCFunction_New(def, (PyObject *)self);
    Py_DECREF(self);
    return method;
}

/* ``msg % (args[0], ..., args[n - 1])`` by the interpreter's own %, for what a level method's C formatter
 * leaves.  A new str; NotImplemented (a new reference) when it failed with an Exception, which is cleared (the
 * level method's fallback renders the failure visibly in the text); NULL with an exception set when something
 * else was raised (KeyboardInterrupt from an argument's __str__, say). */
static PyObject *mmaplog_format_args(PyObject *msg, PyObject *const *args, Py_ssize_t n)
{
    PyObject *tuple = PyTuple_New(n);
    if (tuple == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
    PyObject *text = PyUnicode_Format(msg, tuple);
    Py_DECREF(tuple);
    if (text == NULL && PyErr_ExceptionMatches(PyExc_Exception)) {
        PyErr_Clear();
        return Py_NewRef(Py_NotImplemented);
    }
    return text;
}

#define MMAPLOG_EMITTER_SLOTS(doc)                                                                              \
    {Py_tp_doc, (void *)PyDoc_STR(doc)},                                                                        \
    {Py_tp_dealloc, (void *)mmaplog_emitter_dealloc},                                                           \
    {Py_tp_traverse, (void *)mmaplog_emitter_traverse},                                                         \
    {Py_tp_clear, (void *)mmaplog_emitter_clear},                                                               \
    {0, NULL}

#endif
