"""`dpf validate`: manifests read as kubectl reads them, every bad field named with file, document and object."""

from __future__ import annotations

from pathlib import Path

from dpf_cli.validate import validate_files

DPUSET = """\
apiVersion: provisioning.dpu.nvidia.com/v1alpha1
kind: DPUSet
metadata:
  name: dpuset
  namespace: dpf-operator-system
spec:
  nodeSelector:
    matchLabels:
      feature.node.kubernetes.io/dpu-enabled: "true"
  dpuSelector:
    feature.node.kubernetes.io/dpu-0-pci-address: 0000-04-00
  strategy:
    rollingUpdate:
      maxUnavailable: "10%"
    type: RollingUpdate
  dpuTemplate:
    spec:
      dpuFlavor: dpf-provisioning-hbn-ovn
      bfb:
        name: bf-bundle
      nodeEffect:
        taint:
          key: "dpu"
          value: "provisioning"
          effect: NoSchedule
      automaticNodeReboot: true
"""

BAD_BFB = """\
apiVersion: provisioning.dpu.nvidia.com/v1alpha1
kind: BFB
metadata:
  name: bf-bundle
  namespace: dpf-operator-system
spec:
  url: ftp://example.com/bf.bfb
  fileName: 3
"""


def test_an_unquoted_pci_address_is_the_string_kubectl_reads(tmp_path: Path) -> None:
    f = tmp_path / "dpuset.yaml"
    f.write_text(DPUSET)
    problems, checked, skipped = validate_files([f])
    assert (problems, checked, skipped) == ([], 1, [])


def test_every_bad_field_is_named_with_file_document_and_object(tmp_path: Path) -> None:
    f = tmp_path / "objects.yaml"
    f.write_text(DPUSET + "---\n" + BAD_BFB)
    problems, checked, _ = validate_files([f])
    assert checked == 2
    assert problems and all(p.startswith(f"{f}:2 BFB/dpf-operator-system/bf-bundle: spec.") for p in problems)
    fields = {p.split(": ")[1] for p in problems}
    assert {"spec.url", "spec.fileName"} <= fields
