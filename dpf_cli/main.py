"""The `dpf` command: argument parsing and output only. Each command imports its world lazily, so
`dpf validate` never pays for SimPy and `dpf run` never pays for kopf or grpc."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="dpf-twin: DOCA Platform Framework core, twin and operator")
scenario_app = typer.Typer(no_args_is_help=True, help="Scenario file helpers")
app.add_typer(scenario_app, name="scenario")


@app.command()
def crds(out: Path = typer.Option(..., "--out", help="directory to write one CRD YAML per kind into")) -> None:
    """Render the CustomResourceDefinitions of every DPF kind."""
    import yaml

    from dpf_core.api.crd import render_all

    out.mkdir(parents=True, exist_ok=True)
    docs = render_all()
    for crd in docs:
        path = out / f"{crd['spec']['group']}_{crd['spec']['names']['plural']}.yaml"
        path.write_text(yaml.safe_dump(crd, sort_keys=False))
    typer.echo(f"wrote {len(docs)} CRDs to {out}")


@app.command()
def validate(
    files: list[Path] = typer.Argument(..., help="multi-document YAML files of DPF manifests"),
    namespace: str = typer.Option("default", "--namespace", "-n", help="namespace for objects that name none (as kubectl apply -n)"),
) -> None:
    """Check manifests against the DPF API (schema, defaults, webhooks). Exit 1 listing every bad field."""
    from dpf_cli.validate import validate_files

    problems, checked, skipped = validate_files(files, namespace)
    for line in problems:
        typer.echo(line)
    for line in skipped:
        typer.echo(f"skipped: {line}", err=True)
    if problems:
        typer.echo(f"{len(problems)} problem(s) in {checked} object(s)", err=True)
        raise typer.Exit(1)
    typer.echo(f"{checked} object(s) valid")


@app.command()
def run(
    scenario: Path = typer.Argument(..., help="scenario YAML file"),
    seed: int | None = typer.Option(None, "--seed", help="override the scenario's seed"),
    report: Path | None = typer.Option(None, "--report", help="write the JSON report here"),
    until: str | None = typer.Option(None, "--until", help='end the run at this simulated time ("2h", "90m")'),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar; print failures and the verdict only"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log controller activity (reconcile errors, retries) to stderr"),
    html: Path | None = typer.Option(None, "--html", help="write a self-contained HTML report with plots here"),
) -> None:
    """Run a scenario on the twin. Exit 0 when every expectation holds, 1 when any fails, 2 for an invalid scenario."""
    from dpf_cli.run import run_command

    # Reconcile errors are retried and counted in the report; show them only when asked.
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR, format="%(levelname)s %(name)s: %(message)s")

    if html is not None and report is None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            result = run_command(scenario, seed=seed, report=Path(tmp) / "report.json", until=until, quiet=quiet)
            result.out = [line for line in result.out if not line.startswith("report: ")]
            _write_html(html, Path(tmp) / "report.json", result)
    else:
        result = run_command(scenario, seed=seed, report=report, until=until, quiet=quiet)
        if html is not None and report is not None:
            _write_html(html, report, result)
    for line in result.out:
        typer.echo(line)
    for line in result.err:
        typer.echo(line, err=True)
    global _SKIP_TEARDOWN
    _SKIP_TEARDOWN = True
    raise typer.Exit(result.code)


def _write_html(html: Path, report: Path, result: object) -> None:
    """Render the JSON report the run wrote (it carries the time series) into `html`."""
    from dpf_sim.report_html import write_run_html

    write_run_html(report, html, result)


@app.command()
def sweep(
    scenario: Path = typer.Argument(..., help="scenario YAML file"),
    param: list[str] = typer.Option(..., "--param", "-p", help="PATH=V1,V2,... (repeat for a cartesian product)"),
    replications: int = typer.Option(1, "--replications", "-r", help="seeded runs per parameter point"),
    workers: int | None = typer.Option(None, "--workers", "-j", help="local worker processes (default: CPU count)"),
    dask: str | None = typer.Option(None, "--dask", help="run on this Dask scheduler (tcp://host:8786)"),
    out: Path | None = typer.Option(None, "--out", help="output directory (default out/sweep-<scenario>)"),
    seed: int | None = typer.Option(None, "--seed", help="seed of replication 0 (default: the scenario's)"),
    until: str | None = typer.Option(None, "--until", help="end every run at this simulated time"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no line per finished run"),
) -> None:
    """Run a scenario over a grid of parameters; write runs.csv, runs.parquet and sweep.html."""
    from dpf_sim.sweep import sweep_command

    # Reconcile errors are retried and counted; a sweep's terminal shows one line per finished run.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")

    result = sweep_command(scenario, param, replications=replications, workers=workers, dask=dask, out=out, seed=seed,
                           until=until, quiet=quiet, echo=lambda line: typer.echo(line, err=True))
    for line in result.out:
        typer.echo(line)
    for line in result.err:
        typer.echo(line, err=True)
    raise typer.Exit(result.code)


@app.command()
def serve(
    scenario: Path = typer.Argument(..., help="scenario YAML file (fleet, models, timeline)"),
    port: int = typer.Option(6443, "--port", help="TCP port of the API server"),
    kubeconfig_out: Path = typer.Option(Path("dpf-twin.kubeconfig"), "--kubeconfig-out",
                                        help="write the host cluster's kubeconfig here (DPU clusters' next to it)"),
    speed: float = typer.Option(1.0, "--speed", help="simulated seconds per wall-clock second"),
    no_controllers: bool = typer.Option(False, "--no-controllers", help="run the world only; an operator hosts the controllers"),
    tls: bool = typer.Option(True, "--tls/--no-tls", help="serve HTTPS with a generated self-signed certificate"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    until: str | None = typer.Option(None, "--until", help='stop at this simulated time ("2h"); default: until interrupted'),
    dms_dir: Path | None = typer.Option(None, "--dms-dir",
                                        help="serve the DMS models over gRPC (mTLS); write address, ca.crt, tls.crt, tls.key here"),
    allow_missing_namespaces: bool = typer.Option(
        False, "--allow-missing-namespaces",
        help="accept content in a namespace that does not exist (a real API server answers 404 namespaces \"x\" not found)"),
) -> None:
    """Run a scenario's twin at a multiple of real time and serve it over the Kubernetes API (kubectl, kopf)."""
    from dpf_sim.scenario import ScenarioError, parse_duration
    from dpf_sim.serve import ServeOptions
    from dpf_sim.serve import serve as serve_twin

    try:
        until_s = parse_duration(until) if until is not None else None
        code = serve_twin(scenario, ServeOptions(host=host, port=port, speed=speed, controllers=not no_controllers, tls=tls,
                                                 kubeconfig_out=kubeconfig_out, until=until_s, dms_dir=dms_dir,
                                                 require_namespace=not allow_missing_namespaces))
    except ScenarioError as e:
        for line in e.problems:
            typer.echo(line, err=True)
        raise typer.Exit(2) from None
    except (ValueError, OSError) as e:
        typer.echo(f"dpf serve: {e}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@app.command()
def operator(
    kubeconfig: Path | None = typer.Option(None, "--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube/config)"),
    controllers: str = typer.Option("provisioning", "--controllers",
                                    help="comma-separated sets: provisioning, dpuservice, servicechain, dpucluster"),
    node: str | None = typer.Option(None, "--node", help="also run the DPU node agents (SFC) of this DPU node on the local OVS"),
    metrics_port: int = typer.Option(8081, "--metrics-port", help="Prometheus /metrics port (0 = any free port)"),
    liveness: str = typer.Option("http://0.0.0.0:8080/healthz", "--liveness", help="kopf liveness endpoint URL"),
    namespace: str = typer.Option("dpf-operator-system", "--namespace", help="the operator's namespace"),
    bfb_dir: Path = typer.Option(Path("/bfb"), "--bfb-dir", help="the BFB directory (the PVC shared with DMS pods)"),
    dms_tls_dir: Path | None = typer.Option(None, "--dms-tls-dir", help="ca.crt, tls.crt, tls.key for every DMS (default: DPF's Secrets)"),
    dms_address: str | None = typer.Option(None, "--dms-address", help="dial every DMS at HOST:PORT instead of <podIP>:9339"),
    ovsdb: str | None = typer.Option(None, "--ovsdb", help="OVSDB remote for --node (default unix:/var/run/openvswitch/db.sock)"),
    log_format: str = typer.Option("json", "--log-format", help="json or text"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logs"),
) -> None:
    """Run the core controllers as a kopf operator against a Kubernetes API (a real cluster or `dpf serve`)."""
    from dpf_hw.operator import OperatorConfig, run_operator

    config = OperatorConfig(
        kubeconfig=str(kubeconfig) if kubeconfig else None,
        controllers=tuple(c for c in controllers.split(",") if c.strip()),
        node=node,
        metrics_port=metrics_port,
        liveness=liveness or None,
        namespace=namespace,
        bfb_dir=str(bfb_dir),
        dms_tls_dir=str(dms_tls_dir) if dms_tls_dir else None,
        dms_address=dms_address,
        ovsdb=ovsdb,
    )
    try:
        run_operator(config, log_format=log_format, verbose=verbose)
    except ValueError as e:
        typer.echo(f"dpf operator: {e}", err=True)
        raise typer.Exit(2) from None


@app.command()
def manifests(
    out: Path = typer.Option(Path("deploy/manifests"), "--out", help="directory for crds.yaml, rbac.yaml, operator.yaml"),
    namespace: str = typer.Option("dpf-operator-system", "--namespace", help="namespace of the operator"),
    image: str = typer.Option("ghcr.io/dpf-twin/dpf-twin:latest", "--image", help="operator image"),
    controllers: str = typer.Option("provisioning,servicechain", "--controllers", help="controller sets the Deployment runs"),
) -> None:
    """Render CRDs, RBAC and the operator Deployment for a real cluster."""
    from dpf_hw.manifests import write

    for path in write(out, namespace, image, [c for c in controllers.split(",") if c.strip()]):
        typer.echo(f"wrote {path}")


@app.command()
def fidelity(
    topologies: int = typer.Option(20, "--topologies", min=1, help="random service-chain topologies to build"),
    probes: int = typer.Option(2000, "--probes", min=0, help="probe packets in all (spread over the topologies)"),
    seed: int = typer.Option(1, "--seed", help="seed of topologies and probes"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="one line per topology"),
) -> None:
    """Twin OVS model vs a real ovs-vswitchd: flows, ports and traces. Exit 1 on any mismatch, 2 without OVS."""
    from dpf_cli.fidelity import EXIT_UNAVAILABLE, render, run_fidelity
    from dpf_hw.fidelity_real import available

    ok, why = available()
    if not ok:
        typer.echo(f"dpf fidelity needs a real Open vSwitch: {why}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE)
    report = run_fidelity(topologies, probes, seed, echo=typer.echo, verbose=verbose)
    for line in render(report, seed):
        typer.echo(line)
    raise typer.Exit(report.code)


@scenario_app.command("schema")
def scenario_schema() -> None:
    """Print the JSON Schema of scenario files."""
    from dpf_cli.run import schema_text

    typer.echo(schema_text())


# A finished `dpf run` still holds the whole fleet (~0.5 GB at 10,000 DPUs, ~4 GB at 100,000); freeing it
# object by object at interpreter exit took 2.6 s at 10k and does nothing the kernel does not do at once.
# Set by a command once everything is written; only the process entry point below acts on it (in-process
# callers such as typer's CliRunner get the usual SystemExit).
_SKIP_TEARDOWN = False


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # `dpf ... | head`
        sys.exit(0)
    except SystemExit as done:
        if not _SKIP_TEARDOWN:
            raise
        code = done.code if isinstance(done.code, int) else 0 if done.code is None else 1
        logging.shutdown()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:
            pass
        os._exit(code)


if __name__ == "__main__":
    main()
