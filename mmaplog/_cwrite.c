/* Writer-side accelerator for mmaplog (the record append); see mmaplog/_native.py. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static struct PyModuleDef cread_module = {
    PyModuleDef_HEAD_INIT, "mmaplog._cwrite", "Writer-side accelerator.", -1, NULL,
};

PyMODINIT_FUNC PyInit__cwrite(void) { return PyModule_Create(&cread_module); }
