"""amaas - the Python client of amaas, "AI model as a service".

A binding of libamaas, the C client library (client/amaas.h), so that Python
programs get exactly its retry, resend and deduplication: each job gets
exactly one result.

    import numpy as np
    import amaas

    with amaas.Client("tcp://127.0.0.1:5555") as client:
        out = client.predict("iris", np.array([[5.1, 3.5, 1.4, 0.2]]))
        out["label"]                                   # numpy int64 array
        futures = [client.submit("linear", np.array([[x]])) for x in range(1000)]
        ys = [f.result()["predictions"] for f in futures]

libamaas is found through the environment variable AMAAS_LIBRARY (the path
of libamaas.so), else the linker's search path and the usual install
folders; amaas.LibraryNotFound says so when it is not found.
"""

from ._lib import load_library
from .client import Client, Future, InputInfo, ModelInfo, OutputInfo
from .errors import (AmaasError, Cancelled, Code, DeadlineExceeded, Internal, InvalidArgument,
                     LibraryNotFound, NotFound, PermissionDenied, ResourceExhausted,
                     Unauthenticated, Unavailable, Unknown)

__version__ = "0.1.0"

__all__ = ["AmaasError", "Cancelled", "Client", "Code", "DeadlineExceeded", "Future", "Internal",
           "InputInfo", "InvalidArgument", "LibraryNotFound", "ModelInfo", "NotFound", "OutputInfo",
           "PermissionDenied", "ResourceExhausted", "Unauthenticated", "Unavailable", "Unknown",
           "load_library"]
