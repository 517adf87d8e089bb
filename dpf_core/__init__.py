"""dpf-twin's controller core: API types, store semantics, runtime, controllers and ports.

Pure Python + pydantic. It knows nothing of SimPy, kopf, grpc or netlink; the twin (dpf_sim) and the
production adapters (dpf_hw) plug into it through the store protocol and the ports. The store's and runtime's
hottest modules may run as a mypyc build of these same sources (compiled.py); without it they run as they are.
"""

from dpf_core import compiled as _compiled

_compiled.install()  # the hot modules from their mypyc build when it matches the sources (compiled.py)
