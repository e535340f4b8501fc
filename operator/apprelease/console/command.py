"""`apprelease console`: the web console, locally (like `kubectl argo rollouts dashboard`) or
in the cluster (the Helm chart runs it with --auth token or impersonation).

Registered with the CLI through the `apprelease.commands` entry point: the CLI and the
console are one layer, and neither imports the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import webbrowser

import click

from .access import AUTH_MODES, ProxyHeaders


def _root_param(ctx: click.Context, name: str) -> str | None:
    """A kubectl flag given before the command (`apprelease -n NS console`)."""
    value = ctx.find_root().params.get(name)
    return str(value) if value else None


@click.command()
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 only behind an authenticating proxy).")
@click.option("--port", default=7070, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser.")
@click.option("--read-only", is_flag=True, help="No actions and no deploy form, whatever RBAC allows.")
@click.option("--auth", type=click.Choice(AUTH_MODES), default="kubeconfig", show_default=True,
              help="Whose identity reaches the apiserver: the kubeconfig's (local use); the user's bearer "
                   "token from the Authorization header; or impersonation of the user an authenticating "
                   "proxy names. See docs/console.md.")
@click.option("--user-header", default="X-Forwarded-User", show_default=True,
              help="With --auth impersonation: the proxy's header naming the user.")
@click.option("--groups-header", default="X-Forwarded-Groups", show_default=True,
              help="With --auth impersonation: the proxy's header listing the groups (comma-separated).")
@click.option("--accept-host", "accept_hosts", multiple=True, metavar="NAME",
              help="With --auth kubeconfig: another Host name to answer besides localhost, 127.0.0.1 "
                   "and [::1] (any other is refused: a website can point its own name at 127.0.0.1).")
@click.option("-n", "--namespace", help="Show (and watch) only this namespace (default: every namespace).")
@click.option("--context", help="The kubeconfig context to use.")
@click.option("--kubeconfig", help="Path to the kubeconfig (default: $KUBECONFIG).")
@click.option("-v", "--verbose", is_flag=True, help="Log every request.")
@click.pass_context
def console(ctx: click.Context, address: str, port: int, no_browser: bool, read_only: bool, auth: str,
            user_header: str, groups_header: str, accept_hosts: tuple[str, ...], namespace: str | None, context: str | None,
            kubeconfig: str | None, verbose: bool) -> None:
    """Web console: every AppRelease you may see, live, and the actions RBAC lets you take."""
    from .context import Settings
    from .server import serve

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apprelease.console").setLevel(logging.INFO)
    if not verbose:
        logging.getLogger("apprelease.console.access").setLevel(logging.WARNING)
    kubeconfig = kubeconfig or _root_param(ctx, "kubeconfig")
    settings = Settings(
        address=address, port=port, read_only=read_only, auth=auth,  # type: ignore[arg-type]
        namespace=namespace or _root_param(ctx, "namespace"),
        kubeconfig=kubeconfig.split(os.pathsep)[0] if kubeconfig else None,
        context=context or _root_param(ctx, "context"),
        proxy_headers=ProxyHeaders(user=user_header, groups=groups_header),
        accept_hosts=accept_hosts,
    )

    def ready(url: str) -> None:
        mode = "read-only" if read_only else "actions as RBAC allows"
        click.echo(f"AppRelease console: {url}  ({settings.auth} identity, {mode}; Ctrl-C stops it)", err=True)
        if not no_browser:
            webbrowser.open(url)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, ready))
