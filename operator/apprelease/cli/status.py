"""`apprelease status NAME [--timeout D]`: wait for a rollout's verdict, for pipelines
(as `kubectl rollout status` and `kubectl argo rollouts status --timeout`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import click

from ..k8s.client import Kube
from ..k8s.watch import watch
from .common import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    CliError,
    Context,
    api_errors,
    complete_app_names,
    kube_options,
    pass_context,
    timeout_option,
)
from .output import human_age

DONE_PHASES = ("Healthy", "TakenDown")


def assess(app: Mapping[str, Any], generation: int) -> tuple[str, int | None]:
    """What to print and the exit code, or None while there is no verdict yet for
    ``generation`` (the object's generation when the command started)."""
    status = app.get("status") or {}
    observed = int(status.get("observedGeneration") or 0)
    if observed < generation:
        return (f"waiting for the operator to observe generation {generation}"
                f" (observed: {observed or 'none'})"), None
    phase = status.get("phase") or "Unknown"
    line = f"{phase}: {status.get('message') or ''}".rstrip(": ")
    stalled = any(c.get("type") == "Stalled" and c.get("status") == "True" for c in status.get("conditions") or [])
    if stalled:
        return (line if phase == "Degraded" else f"Stalled: {status.get('message') or ''}"), EXIT_FAILED
    if phase == "Degraded":
        return line, EXIT_FAILED
    if phase in DONE_PHASES:
        return line, EXIT_OK
    return line, None


def wait_for_verdict(
    kube: Kube, namespace: str, name: str, timeout: float | None, *,
    echo: Callable[..., None] = click.echo,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """The exit code: from the phase once the operator has observed the generation the
    object had at the start, EXIT_TIMEOUT when ``timeout`` passes first. One watch, no
    polling; one line per change of what there is to say."""
    until = clock() + timeout if timeout else None
    generation: int | None = None
    shown: str | None = None

    def retrying(exc: Exception) -> None:
        echo(f"(the watch was interrupted: {exc}; resuming)", err=True)

    events = watch(kube, "AppRelease", namespace, field_selector=f"metadata.name={name}",
                   until=until, clock=clock, sleep=sleep, on_retry=retrying)
    for event in events:
        if event.type == "DELETED" or not event.objects:
            if generation is None:
                raise CliError(f'appreleases.apprelease.io "{name}" not found in namespace {namespace}')
            raise CliError(f"{name} was deleted while waiting")
        app = event.objects[-1]
        if generation is None:
            generation = int(app["metadata"].get("generation") or 0)
        line, verdict = assess(app, generation)
        if line != shown:
            echo(line)
            shown = line
        if verdict is not None:
            events.close()
            return verdict
    echo(f"error: timed out after {human_age(timeout or 0)} waiting for {name}"
         f" ({shown or 'no answer'})", err=True)
    return EXIT_TIMEOUT


@click.command(epilog=EXIT_CODES)
@click.argument("name", shell_complete=complete_app_names)
@timeout_option("Give up after this long (exit 3): 90, 30s, 5m, 1h30m; 0 waits for ever.")
@kube_options
@pass_context
@api_errors
def status(ctx: Context, name: str, timeout: float) -> None:
    """Wait for NAME's rollout and exit with its verdict: 0 Healthy (or TakenDown),
    1 Degraded or Stalled, 3 timed out.

    First waits until the operator has observed the spec as it was when the command started
    (status.observedGeneration), so `kubectl apply` then `apprelease status` judges the new
    spec, never the previous rollout. Paused and Progressing keep it waiting. Prints one line
    (phase: message) per change. A watch, not polling.
    """
    raise click.exceptions.Exit(wait_for_verdict(ctx.kube, ctx.namespace, name, timeout or None))
