"""`dpf serve` plays a scenario's timeline as `dpf run` does: one document at a time, a refused one named by its
file:line, the rest still applied."""

from __future__ import annotations

import io
from pathlib import Path

from dpf_core.api.external import ConfigMap
from dpf_sim.scenario import load_scenario
from dpf_sim.serve import ServedTwin, ServeOptions

SCENARIO = """\
name: serve-timeline
seed: 1
fleet: {racks: 1, hosts: 1}
timeline:
  - at: 1s
    apply:
      manifests:
        - apiVersion: provisioning.dpu.nvidia.com/v1alpha1
          kind: DPUSet
          metadata: {name: broken, namespace: default}
          spec:
            strategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: "0%"}}
            dpuTemplate: {spec: {bfb: {name: bf-bundle}}}
        - apiVersion: v1
          kind: ConfigMap
          metadata: {name: after-the-refused-one, namespace: default}
"""


def test_a_refused_document_is_named_by_file_and_line_and_the_rest_apply(tmp_path: Path) -> None:
    path = tmp_path / "serve-timeline.yaml"
    path.write_text(SCENARIO)
    out = io.StringIO()
    served = ServedTwin(load_scenario(path), ServeOptions(tls=False, controllers=False,
                                                          kubeconfig_out=tmp_path / "k"), out=out)
    served.twin.env.run(until=2)
    failures = [line for line in out.getvalue().splitlines() if "failed" in line]
    assert len(failures) == 1 and f"{path}:8" in failures[0] and "maxUnavailable" in failures[0]
    assert served.twin.host.try_get(ConfigMap, "after-the-refused-one", "default") is not None
