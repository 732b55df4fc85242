/* Reader-side accelerator for mmaplog (slot validation and output); see mmaplog/_native.py. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static struct PyModuleDef cread_module = {
    PyModuleDef_HEAD_INIT, "mmaplog._cread", "Reader-side accelerator.", -1, NULL,
};

PyMODINIT_FUNC PyInit__cread(void) { return PyModule_Create(&cread_module); }
