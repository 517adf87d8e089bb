"""The `dpf` command: argument parsing and output only. Each command imports its world lazily, so
`dpf validate` never pays for SimPy and `dpf run` never pays for kopf or grpc."""

from __future__ import annotations

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
) -> None:
    """Run a scenario on the twin. Exit 0 when every expectation holds, 1 when any fails, 2 for an invalid scenario."""
    import logging

    from dpf_cli.run import run_command

    # Reconcile errors are retried and counted in the report; show them only when asked.
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR, format="%(levelname)s %(name)s: %(message)s")

    result = run_command(scenario, seed=seed, report=report, until=until, quiet=quiet)
    for line in result.out:
        typer.echo(line)
    for line in result.err:
        typer.echo(line, err=True)
    raise typer.Exit(result.code)


@scenario_app.command("schema")
def scenario_schema() -> None:
    """Print the JSON Schema of scenario files."""
    from dpf_cli.run import schema_text

    typer.echo(schema_text())


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # `dpf ... | head`
        sys.exit(0)


if __name__ == "__main__":
    main()
