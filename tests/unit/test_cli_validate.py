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
    line = (DPUSET + "---\n").count("\n") + 1 + BAD_BFB[: len(BAD_BFB) - len(BAD_BFB.lstrip("\n"))].count("\n")
    assert problems and all(p.startswith(f"{f}:{line} BFB/dpf-operator-system/bf-bundle: spec.") for p in problems)
    fields = {p.split(": ")[1] for p in problems}
    assert {"spec.url", "spec.fileName"} <= fields


def test_a_file_without_objects_is_a_problem(tmp_path: Path) -> None:
    empty, comments = tmp_path / "empty.yaml", tmp_path / "comments.yaml"
    empty.write_text("")
    comments.write_text("# nothing here\n---\n")
    problems, checked, _ = validate_files([empty, comments])
    assert checked == 0
    assert problems == [f"{empty}: no objects in the file (kubectl apply refuses it too)",
                        f"{comments}: no objects in the file (kubectl apply refuses it too)"]
