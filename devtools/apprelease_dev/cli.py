"""`dev`: a real local Kubernetes control plane (etcd, apiserver, controllers, scheduler,
KWOK fake nodes) for developing and testing the operator, started with one command."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from apprelease_dev import components
from apprelease_dev.build import ensure_binaries
from apprelease_dev.cluster import (
    DEFAULT_NODES,
    DEFAULT_START_TIMEOUT_SECONDS,
    ClusterError,
    LocalCluster,
    tail_of,
)
from apprelease_dev.go_runner import BuildError
from apprelease_dev.paths import default_state_dir
from apprelease_dev.processes import exit_on_termination_signals

FOLLOW_POLL_SECONDS = 0.5


def _cluster(
    ctx: click.Context, nodes: int = DEFAULT_NODES, *, with_addons: bool = True
) -> LocalCluster:
    state_dir: Path = ctx.obj["state_dir"]
    return LocalCluster(state_dir, nodes=nodes, with_addons=with_addons)


@click.group(name="dev")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the cluster keeps state, PKI, logs and etcd data "
    "(default: $APPRELEASE_DEV_DIR or ~/.cache/apprelease/dev/default).",
)
@click.pass_context
def dev(ctx: click.Context, state_dir: Path | None) -> None:
    """Run a local Kubernetes control plane with fake (KWOK) nodes."""
    ctx.ensure_object(dict)
    ctx.obj["state_dir"] = state_dir or default_state_dir()


@dev.command()
@click.option(
    "--nodes",
    type=click.IntRange(1, 100),
    default=DEFAULT_NODES,
    show_default=True,
    help="Fake nodes to register.",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait until nodes are Ready and pods can be created. --no-wait returns once the "
    "processes run and the nodes are registered.",
)
@click.option(
    "--timeout",
    type=float,
    default=DEFAULT_START_TIMEOUT_SECONDS,
    show_default=True,
    help="Seconds to wait for health.",
)
@click.option(
    "--bare", is_flag=True,
    help="Only the control plane: no CRD, no operator, no example.",
)
@click.option("--nacos", is_flag=True, help="Also run a local Nacos 2.x server (from Maven Central).")
@click.option(
    "--no-addons", is_flag=True,
    help="Without metrics-server (metrics.k8s.io for HPAs) and the Gateway API CRDs.",
)
@click.pass_context
def up(
    ctx: click.Context, nodes: int, wait: bool, timeout: float, bare: bool, nacos: bool,
    no_addons: bool,
) -> None:
    """Build what is missing, start the cluster (plus, unless --bare, the CRD, the operator and
    examples/order-service.yaml) and leave it all running in the background."""

    cluster = _cluster(ctx, nodes, with_addons=not no_addons)
    if cluster.is_running():
        click.echo(f"A cluster is already running from {cluster.state_dir}.")
        _print_kubeconfig_hint(cluster)
        return
    try:
        # A SIGTERM/SIGHUP mid-start stops what was started so far, as Ctrl-C does.
        with exit_on_termination_signals():
            ensure_binaries(progress=click.echo)
            started = time.monotonic()
            cluster.up(wait=wait, timeout=timeout, progress=click.echo)
            _start_extras(cluster, bare=bare, nacos=nacos)
    except (BuildError, ClusterError, TimeoutError) as error:
        click.echo(f"Error: {error}", err=True)
        click.echo(f"Logs: {cluster.logs_dir}", err=True)
        sys.exit(1)
    click.echo(f"Started in {time.monotonic() - started:.1f} s; logs in {cluster.logs_dir}")
    _print_kubeconfig_hint(cluster)


def _start_extras(cluster: LocalCluster, *, bare: bool, nacos: bool) -> None:
    """Nacos and (unless bare) the CRD, the operator and the example. Nacos and the operator
    are recorded in the cluster's state, so `down` stops them with the cluster."""
    from apprelease_dev import embedded

    if nacos:
        cluster.start_attached(embedded.NACOS, embedded.nacos_command(cluster.state_dir / "nacos"))
        click.echo(f"Nacos starting (its address and login: {cluster.layout.log(embedded.NACOS)})")
    if bare:
        return
    kube = embedded.kube_for(cluster)
    embedded.install_crd(kube)
    cluster.start_attached(embedded.OPERATOR, embedded.operator_command(cluster.kubeconfig))
    example = _example_path()
    body, note = embedded.load_example(example, demo=not nacos)
    embedded.apply_example(kube, body)
    click.echo(
        f"CRD installed, operator running (log: {cluster.layout.log(embedded.OPERATOR)}), "
        f"{example.name} applied"
    )
    if note:
        click.echo(note)


def _example_path() -> Path:
    return Path(__file__).resolve().parents[2] / "examples" / "order-service.yaml"


def _print_kubeconfig_hint(cluster: LocalCluster) -> None:
    click.echo(f"Kubeconfig: {cluster.kubeconfig}")
    click.echo(f"  export KUBECONFIG={cluster.kubeconfig}")


@dev.command()
@click.option("--keep-data", is_flag=True, help="Keep etcd's data (the next `up` starts from it).")
@click.pass_context
def down(ctx: click.Context, keep_data: bool) -> None:
    """Stop every process of the cluster, and the operator and Nacos started with it
    (SIGTERM, then SIGKILL), and remove its etcd data."""
    cluster = _cluster(ctx)
    if cluster.state() is None:
        click.echo(f"No cluster recorded in {cluster.state_dir}; nothing to stop.")
        return
    stopping = list(reversed(cluster.state().components))  # type: ignore[union-attr]
    try:
        cluster.down(keep_data=keep_data)
    except ClusterError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)
    click.echo(f"Stopped {', '.join(stopping)}.")
    click.echo(
        f"Stopped the cluster in {cluster.state_dir}{' (etcd data kept)' if keep_data else ''}."
    )


@dev.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Show components, PIDs, ports and health; exit 1 unless everything is healthy."""
    cluster = _cluster(ctx)
    state = cluster.state()
    if state is None:
        click.echo(f"No cluster recorded in {cluster.state_dir}.")
        sys.exit(1)
    statuses = cluster.status()
    click.echo(f"{'COMPONENT':<24} {'PID':>7} {'PORT':>6}  {'RUNNING':<8} {'HEALTHY':<8}")
    for item in statuses:
        click.echo(
            f"{item.name:<24} {item.pid:>7} {item.port or '-':>6}  "
            f"{'yes' if item.running else 'no':<8} {'yes' if item.healthy else 'no':<8}"
        )
    click.echo(f"API server: {state.apiserver_url}")
    click.echo(f"Nodes: {', '.join(state.node_names)}")
    click.echo(f"Kubeconfig: {state.kubeconfig}")
    if not statuses or not all(item.healthy for item in statuses):
        sys.exit(1)


@dev.command()
@click.pass_context
def kubeconfig(ctx: click.Context) -> None:
    """Print the path of the admin kubeconfig."""
    cluster = _cluster(ctx)
    if not cluster.kubeconfig.exists():
        click.echo(f"No kubeconfig at {cluster.kubeconfig} (run `dev up`).", err=True)
        sys.exit(1)
    click.echo(str(cluster.kubeconfig))


@dev.command()
@click.argument("component", required=False, type=click.Choice(components.COMPONENTS))
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C to stop).")
@click.option(
    "--tail",
    "tail_lines",
    type=int,
    default=None,
    help="Only the last N lines (default: all of one log, 20 of each otherwise).",
)
@click.pass_context
def logs(ctx: click.Context, component: str | None, follow: bool, tail_lines: int | None) -> None:
    """Print a component's log, or the tail of every log."""
    cluster = _cluster(ctx)
    names = [component] if component else list(components.COMPONENTS)
    paths = {name: cluster.layout.log(name) for name in names}
    if component:
        path = paths[component]
        if not path.exists():
            click.echo(f"No log at {path}.", err=True)
            sys.exit(1)
        click.echo(
            tail_of(path, tail_lines) if tail_lines else path.read_text(errors="replace"),
            nl=tail_lines is not None,
        )
    else:
        for _name, path in paths.items():
            click.echo(f"==> {path} <==")
            click.echo(tail_of(path, tail_lines or 20))
    if follow:
        _follow(paths, prefix=component is None)


def _follow(paths: dict[str, Path], *, prefix: bool) -> None:
    offsets = {name: (path.stat().st_size if path.exists() else 0) for name, path in paths.items()}
    try:
        while True:
            for name, path in paths.items():
                if not path.exists():
                    continue
                size = path.stat().st_size
                if size < offsets[name]:  # a new `up` recreated the log
                    offsets[name] = 0
                if size == offsets[name]:
                    continue
                with path.open("r", errors="replace") as handle:
                    handle.seek(offsets[name])
                    chunk = handle.read()
                    offsets[name] = handle.tell()
                for line in chunk.splitlines():
                    click.echo(f"[{name}] {line}" if prefix else line)
            time.sleep(FOLLOW_POLL_SECONDS)
    except KeyboardInterrupt:
        pass


@dev.command()
@click.option("--force", is_flag=True, help="Rebuild even if all binaries are present.")
@click.option("--prometheus", "with_prometheus", is_flag=True,
              help="Also build Prometheus (the analysis tests' metrics server; cached per version).")
def build(force: bool, with_prometheus: bool) -> None:
    """Build the control-plane binaries from Go modules (cached per version)."""
    from apprelease_dev.prometheus import ensure_prometheus

    try:
        directory = ensure_binaries(progress=click.echo, force=force)
        prometheus = ensure_prometheus(progress=click.echo, force=force) if with_prometheus else None
    except BuildError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)
    click.echo(str(directory))
    if prometheus is not None:
        click.echo(str(prometheus))


@dev.command()
@click.option("--refresh", is_flag=True,
              help="Rebuild every layer: Debian's and PyPI's current packages, not the cached ones.")
@click.option("--push", "destination", default=None, metavar="DEST",
              help="Then push it, e.g. docker://registry.example.com/platform/apprelease:0.1.0 "
              "(credentials: buildah login), or write it: oci-archive:apprelease.tar.")
def image(refresh: bool, destination: str | None) -> None:
    """Build the operator's image from Debian's packages and PyPI's wheels with buildah (no
    container engine, no base image), cached by its inputs; print its reference."""
    from apprelease_dev.image import build_image, push_image

    try:
        built = build_image(progress=click.echo, refresh=refresh)
        if destination:
            push_image(built.reference, destination)
    except BuildError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)
    state = "cached" if built.cached else f"built ({', '.join(built.layers_built)} layers)"
    click.echo(f"{built.reference}  {state} in {built.seconds:.0f} s, "
               f"{built.size_bytes / 2**20:.0f} MiB uncompressed (image {built.image_id[:12]})")
    if destination:
        click.echo(f"pushed to {destination}")


@dev.command(name="run")
@click.option(
    "-f", "--filename", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None, help="AppRelease to apply (default: examples/order-service.yaml).",
)
@click.pass_context
def run_embedded(ctx: click.Context, filename: Path | None) -> None:
    """The embedded default: start the local control plane, install the CRD, run the
    operator and the web console, apply the example and show it converge. Ctrl-C (or
    SIGTERM, SIGHUP) stops everything."""
    from apprelease.cli.common import Context
    from apprelease.cli.tree import show
    from apprelease_dev import embedded

    example = filename or _example_path()
    state_dir: Path = ctx.obj["state_dir"]
    try:
        with (
            exit_on_termination_signals(),
            embedded.embedded_cluster(state_dir, click.echo) as cluster,
        ):
            kube = embedded.kube_for(cluster)
            click.echo("installing the AppRelease CRD")
            embedded.install_crd(kube)
            with (
                embedded.operator_process(cluster, click.echo) as log_path,
                embedded.console_process(cluster, click.echo) as url,
            ):
                body, note = embedded.load_example(example, demo=filename is None)
                embedded.apply_example(kube, body)
                meta = body["metadata"]
                click.echo(f"operator running (log: {log_path}); applied {example.name}")
                if note:
                    click.echo(note)
                click.echo(f"console: {url}  (open it in a browser)")
                click.echo(f"in another shell: export KUBECONFIG={cluster.kubeconfig}")
                click.echo("Ctrl-C stops the console, the operator and the cluster.\n")
                show(Context(str(cluster.kubeconfig), meta.get("namespace")), meta["name"], watch=True)
    except (BuildError, ClusterError, TimeoutError) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)


if __name__ == "__main__":  # last: every command is registered by now
    dev()
