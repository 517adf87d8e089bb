"""dpf-twin's controller core: API types, store semantics, runtime, controllers and ports.

Pure Python + pydantic. It knows nothing of SimPy, kopf, grpc or netlink; the twin (dpf_sim) and the
production adapters (dpf_hw) plug into it through the store protocol and the ports.
"""
