"""Our gNMI/gNOI protocol files (the subset DPF calls) and their generated Python modules.

The .proto files are written for dpf-twin from openconfig's gNMI and gNOI specifications, with the same
packages, services, message/field names and field numbers, so the generated stubs talk to a real DMS
(`dmsd` on `<podIP>:9339`). Regenerate with `python -m dpf_hw.proto.generate` (`make protos`).

This package is also the one piece of dpf_hw the twin may import (to serve its DMS models over real gRPC),
so the wire contract both sides share lives here: method paths, the mode path, and the routing metadata.
Importing this module does not import grpc or protobuf.
"""

from __future__ import annotations

from typing import Final

DMS_PORT: Final = 9339

# Full method names as they appear on the wire (`/<package>.<Service>/<Method>`).
GNMI_SET: Final = "/gnmi.gNMI/Set"
OS_INSTALL: Final = "/gnoi.os.OS/Install"
OS_ACTIVATE: Final = "/gnoi.os.OS/Activate"
OS_VERIFY: Final = "/gnoi.os.OS/Verify"
SYSTEM_REBOOT: Final = "/gnoi.system.System/Reboot"
SYSTEM_REBOOT_STATUS: Final = "/gnoi.system.System/RebootStatus"

# What DPF's setModeRequest writes, element by element: /nvidia/mode/config/mode = "DPU".
MODE_PATH: Final = ("nvidia", "mode", "config", "mode")
# The subcomponent DPF asks RebootStatus about.
REBOOT_STATUS_SUBCOMPONENT: Final = "CPU"

# Every call carries the DPU it is meant for. A real DMS serves one DPU and ignores unknown metadata; the
# twin serves every simulated DPU from one loopback server and routes each call by these keys (gRPC
# metadata keys are lower-case ASCII).
DPU_METADATA: Final = "dpf-dpu"  # "<namespace>/<name>" of the DPU object
TARGET_METADATA: Final = "dpf-dms-target"  # the DMS address the controller resolved, "<podIP>:9339"
