"""libamaas through ctypes: finding and loading the library, and the C
structs and functions of client/amaas.h, declared once.

The library is looked for, in this order: the path in the environment
variable AMAAS_LIBRARY (and only there when it is set), then
ctypes.util.find_library("amaas") (the linker's cache, LD_LIBRARY_PATH),
then the usual install folders.  It is loaded once per process, on the first
Client (or load_library call), so that `import amaas` works without it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import List, Optional

from .errors import LibraryNotFound

MAX_DIMS = 8  # AMAAS_MAX_DIMS
MAX_OUTPUTS = 8  # AMAAS_MAX_OUTPUTS
MAX_INPUTS = 16  # AMAAS_MAX_INPUTS
MAX_TENSORS = 16  # tensors in one payload (proto/tensors.h CODEC_MAX_TENSORS)

# amaas_dtype_t
DTYPE_INVALID, FP32, FP64, INT32, INT64, UINT8, BOOL, BYTES = range(8)
DTYPE_NAMES = {FP32: "FP32", FP64: "FP64", INT32: "INT32", INT64: "INT64", UINT8: "UINT8",
               BOOL: "BOOL", BYTES: "BYTES"}

# Folders an installed libamaas may be in (scripts/install puts it in /usr/local/lib)
INSTALL_DIRS = ["/usr/local/lib", "/usr/local/lib64", "/usr/local/lib/x86_64-linux-gnu",
                "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64",
                "/usr/lib"]
NAMES = ["libamaas.so", "libamaas.so.0"]


class Error(ctypes.Structure):
    """amaas_error_t"""
    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * 256)]


class Tensor(ctypes.Structure):
    """amaas_tensor_t"""
    _fields_ = [("name", ctypes.c_char_p), ("datatype", ctypes.c_int), ("ndim", ctypes.c_int),
                ("shape", ctypes.c_int64 * MAX_DIMS), ("data", ctypes.c_void_p),
                ("size", ctypes.c_size_t)]


class Result(ctypes.Structure):
    """amaas_result_t"""
    _fields_ = [("id", ctypes.c_uint64), ("error", Error), ("model", ctypes.c_char_p),
                ("version", ctypes.c_char_p), ("n_outputs", ctypes.c_size_t),
                ("outputs", ctypes.POINTER(Tensor)), ("queue_us", ctypes.c_uint64),
                ("compute_us", ctypes.c_uint64), ("batch", ctypes.c_uint32)]


class Options(ctypes.Structure):
    """amaas_options_t"""
    _fields_ = [("deadline_ms", ctypes.c_uint32), ("priority", ctypes.c_uint32),
                ("version", ctypes.c_char_p)]


class OutputInfo(ctypes.Structure):
    """amaas_output_info_t"""
    _fields_ = [("name", ctypes.c_char * 64), ("datatype", ctypes.c_int),
                ("width", ctypes.c_uint32), ("ndim", ctypes.c_int),
                ("shape", ctypes.c_int64 * MAX_DIMS)]


class InputInfo(ctypes.Structure):
    """amaas_input_info_t"""
    _fields_ = [("name", ctypes.c_char * 128), ("datatype", ctypes.c_int),
                ("ndim", ctypes.c_int), ("shape", ctypes.c_int64 * MAX_DIMS)]


class ModelInfo(ctypes.Structure):
    """amaas_model_info_t"""
    _fields_ = [("name", ctypes.c_char * 128), ("version", ctypes.c_char * 64),
                ("workers", ctypes.c_uint32), ("width", ctypes.c_uint32),
                ("mapped", ctypes.c_uint64), ("queued", ctypes.c_uint32),
                ("input", ctypes.c_char * 64), ("datatype", ctypes.c_int),
                ("n_outputs", ctypes.c_uint32), ("outputs", OutputInfo * MAX_OUTPUTS),
                ("n_inputs", ctypes.c_uint32), ("inputs", InputInfo * MAX_INPUTS)]


ClientP = ctypes.c_void_p  # amaas_client_t *, opaque
ResultP = ctypes.POINTER(Result)

_lib: Optional[ctypes.CDLL] = None


def candidates() -> List[str]:
    """Paths (or names for dlopen) to try, in order."""
    env = os.environ.get("AMAAS_LIBRARY")
    if env:
        return [env]
    found = ctypes.util.find_library("amaas")
    paths = [found] if found else []
    for folder in INSTALL_DIRS:
        for name in NAMES:
            path = os.path.join(folder, name)
            if os.path.exists(path):
                paths.append(path)
    return paths


def _declare(lib: ctypes.CDLL) -> None:
    """argtypes and restype of every function the package calls."""
    c_int, c_char_p, c_size_t, c_uint64 = ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, \
        ctypes.c_uint64
    err_p, tensor_p = ctypes.POINTER(Error), ctypes.POINTER(Tensor)
    table = {
        "amaas_connect": ([c_char_p, c_int, err_p], ClientP),
        "amaas_connect_curve": ([c_char_p, c_int, c_char_p, c_char_p, err_p], ClientP),
        "amaas_close": ([ctypes.POINTER(ClientP)], None),
        "amaas_set_timeout": ([ClientP, c_int], None),
        "amaas_set_retry": ([ClientP, c_int, c_int], None),
        "amaas_send_opts": ([ClientP, c_char_p, tensor_p, c_size_t, ctypes.POINTER(Options),
                             err_p], c_uint64),
        "amaas_cancel": ([ClientP, c_uint64], c_int),
        "amaas_pending": ([ClientP], c_size_t),
        "amaas_stats": ([ClientP, ctypes.POINTER(c_uint64), ctypes.POINTER(c_uint64)], None),
        "amaas_recv": ([ClientP, c_int, err_p], ResultP),
        "amaas_result_destroy": ([ctypes.POINTER(ResultP)], None),
        "amaas_models": ([ClientP, ctypes.POINTER(ModelInfo), c_size_t, err_p], c_int),
        "amaas_code_name": ([c_int], c_char_p),
        "amaas_dtype_name": ([c_int], c_char_p),
    }
    for name, (argtypes, restype) in table.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = restype


def load_library(path: Optional[str] = None) -> ctypes.CDLL:
    """libamaas, loaded once per process: from `path` if given (the first
    call decides), else as the module's doc says.  Raises LibraryNotFound
    (an amaas.Unavailable and an ImportError) saying where it looked and how
    to set AMAAS_LIBRARY."""
    global _lib
    if _lib is not None:
        return _lib
    tried = [path] if path else candidates()
    why = []
    for candidate in tried:
        try:
            lib = ctypes.CDLL(candidate)
            _declare(lib)
        except (OSError, AttributeError) as e:
            why.append("%s: %s" % (candidate, e))
            continue
        _lib = lib
        return lib
    if not tried:
        why.append("find_library('amaas') found nothing, and no libamaas.so is in %s"
                   % ", ".join(INSTALL_DIRS))
    raise LibraryNotFound(
        "libamaas (the amaas client library) could not be loaded (%s); build or install "
        "amaas and set AMAAS_LIBRARY to the path of libamaas.so, e.g. "
        "AMAAS_LIBRARY=/path/to/amaas/build/libamaas.so" % "; ".join(why))
