"""`dpf fidelity`: the twin's Open vSwitch model against a real ovs-vswitchd, topology by topology.

For each random topology (dpf_sim.fidelity.generate) both switches are programmed by the same SFC agent code,
then compared: (a) OVSDB port rows and `dump-flows --no-stats` lines, (b) every probe packet's deliveries (output
port, headers as they left, or a drop) from the twin's trace against `ofproto/trace -generate`, and (c) the flow
tables again after the probes, so what `learn` installed is compared too. This module only joins the halves
(the twin in dpf_sim, real OVS in dpf_hw) and prints; exit 1 on any mismatch, 2 when OVS is not available.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_UNAVAILABLE = 2
MAX_ROWS = 60


@dataclass
class FidelityReport:
    topologies: int = 0
    probes: int = 0
    replies: int = 0
    drops: int = 0
    deliveries: int = 0
    flows_compared: int = 0
    ports_compared: int = 0
    chains: int = 0
    chains_ready: int = 0
    seconds: float = 0.0
    mismatches: list[Any] = field(default_factory=list)  # dpf_sim.fidelity.Mismatch

    @property
    def code(self) -> int:
        return EXIT_MISMATCH if self.mismatches else EXIT_OK


def probe_split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def run_fidelity(topologies: int, probes: int, seed: int, echo: Callable[[str], None] = print,
                 verbose: bool = False) -> FidelityReport:
    from dpf_hw.fidelity_real import real_switch

    report = FidelityReport()
    start = time.monotonic()
    # A chain pass that runs before its ports exist logs an error and retries 5 s later (as in DPF); here only
    # the outcome counts (chains ready on both sides), so the controllers' own error logging stays quiet.
    logging.disable(logging.ERROR)
    try:
        with real_switch() as real:
            for index, count in enumerate(probe_split(probes, topologies)):
                _one(report, real, index, count, seed, echo, verbose)
    finally:
        logging.disable(logging.NOTSET)
    report.seconds = time.monotonic() - start
    return report


def _ready_chains(store: Any) -> list[str]:
    from dpf_core.api.svc import ServiceChain

    return sorted(sc.name for sc in store.list(ServiceChain)
                  if any(c.type == "Ready" and c.status == "True" for c in sc.status.conditions))


def _one(report: FidelityReport, real: Any, index: int, count: int, seed: int, echo: Callable[[str], None],
         verbose: bool) -> None:
    from dpf_sim import fidelity as fid

    t0 = time.monotonic()
    topo = fid.generate(index, seed)
    real.reset()
    sim = fid.SimSwitch(now=time.monotonic)
    sim_prog, real_prog = fid.program(topo, sim), fid.program(topo, real)
    if sim_prog.errors != real_prog.errors:
        report.mismatches.append(fid.Mismatch(index, "program", "errors", "; ".join(sim_prog.errors) or "-",
                                              "; ".join(real_prog.errors) or "-"))
    sim_ready, real_ready = _ready_chains(sim_prog.store), _ready_chains(real_prog.store)
    if sim_ready != real_ready:
        report.mismatches.append(fid.Mismatch(index, "program", "chains Ready", ",".join(sim_ready) or "-",
                                              ",".join(real_ready) or "-"))
    report.chains += len(topo.chains)
    report.chains_ready += len(real_ready)
    report.mismatches += fid.compare_state(topo, sim, real, "programmed")
    t1 = time.monotonic()
    plan = fid.probes(topo, count, random.Random(f"probes/{seed}/{index}"))
    for probe, seen_sim, seen_real in fid.run_paired(sim, real, plan):
        report.probes += 1
        report.drops += not seen_real
        report.deliveries += len(seen_real)
        # The order of the copies is not compared: NORMAL floods in ovs-vswitchd's bundle order, which for
        # ports re-created in one reconfiguration is hash order (see docs/fidelity.md).
        if sorted(seen_sim, key=repr) != sorted(seen_real, key=repr):
            report.mismatches.append(fid.Mismatch(
                index, "trace", fid.format_packet(probe.bridge, probe.in_port, probe.packet),
                fid.format_deliveries(seen_sim), fid.format_deliveries(seen_real)))
    report.replies += sum(p.reply for p in plan)
    report.mismatches += fid.compare_state(topo, sim, real, "after probes")
    for bridge, _ in topo.bridges:
        report.flows_compared += len(real.flows(bridge))
        report.ports_compared += len(real.ports(bridge))
    report.topologies += 1
    if verbose:
        echo(f"topology {index} [{fid.topology_digest(topo)}]: {topo.describe()}; {len(real_ready)}/"
             f"{len(topo.chains)} chains ready; {count} probes; programmed in {t1 - t0:.1f}s, "
             f"probed in {time.monotonic() - t1:.1f}s")


def render(report: FidelityReport, seed: int) -> list[str]:
    lines: list[str] = []
    if report.mismatches:
        rows = [("topo", "what", "where", "twin", "real OVS")]
        rows += [(str(m.topology), m.what, m.where, m.sim, m.real)
                 for m in report.mismatches[:MAX_ROWS]]
        widths = [min(60, max(len(r[i]) for r in rows)) for i in range(3)]
        for r in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + f"  twin: {r[3]}")
            lines.append(" " * (sum(widths) + 6) + f"  real: {r[4]}")
        if len(report.mismatches) > MAX_ROWS:
            lines.append(f"... and {len(report.mismatches) - MAX_ROWS} more")
    lines.append(
        f"fidelity (seed {seed}): {report.topologies} topologies, {report.probes} probes "
        f"({report.replies} request/reply pairs, {report.deliveries} deliveries, {report.drops} drops), "
        f"{report.chains_ready}/{report.chains} chains ready, "
        f"{report.flows_compared} flows and {report.ports_compared} ports compared, "
        f"{len(report.mismatches)} mismatches in {report.seconds:.1f}s")
    return lines
