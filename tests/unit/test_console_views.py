"""Console view models and templates: pure, from cached objects to what the pages show."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import jinja2
import pytest

from apprelease.console import views
from apprelease.console.context import PACKAGE_DIR

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
CANARY_STEPS = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "30s"}}]


def app(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "shop", "namespace": "team-a", "generation": 3, "resourceVersion": "9",
                         "creationTimestamp": "2026-11-23T09:55:00Z", "annotations": {}},
            "spec": {"image": "harbor.company.com/team/shop:v2", "replicas": 3,
                     "strategy": {"canary": {"steps": CANARY_STEPS}}, **spec},
            "status": {"observedGeneration": 3, **(status or {})}}


PAUSED = {"phase": "Paused", "strategy": "canary", "step": "2/4", "setWeight": 20,
          "rollout": {"canary": {"phase": "Stepping", "step": 1, "stepStartTime": "2026-11-23T09:58:00Z",
                                 "pauseStartTime": "2026-11-23T09:58:10Z"}},
          # Derived from status.rollout for older readers; the console reads the rollout.
          "currentStepIndex": 1, "stepStartTime": "2026-11-23T09:58:00Z", "pauseStartTime": "2026-11-23T09:58:10Z",
          "actualWeight": 25, "ready": "4/3", "currentRevision": 2, "stableRevision": 1, "canaryRevision": 2,
          "canaryRevisionHash": "h2", "message": "canary revision 2 paused at step 2/4: promote to continue",
          "stable": {"revision": 1, "replicas": 3, "readyReplicas": 3},
          "canary": {"revision": 2, "replicas": 1, "readyReplicas": 1},
          "registration": {"provider": "nacos", "service": "DEFAULT_GROUP@@shop", "summary": "4/4",
                           "instances": [{"ip": "10.0.0.1", "port": 8080, "pod": "shop-a", "revision": 1,
                                          "healthy": True, "enabled": True, "weight": 1.0, "warmupSeconds": 30}],
                           "stale": [{"ip": "10.0.0.9", "port": 8080, "healthy": False, "enabled": True}],
                           "instanceCount": 5, "staleCount": 1}}


ABORTED = {**PAUSED, "rollout": {"canary": {"phase": "Aborted", "step": 1, "stepStartTime": "2026-11-23T09:58:00Z",
                                             "reason": "CrashLoop", "message": "canary pod shop-b restarted 4 times"}},
           "aborted": True, "abortReason": "CrashLoop", "abortMessage": "canary pod shop-b restarted 4 times"}
# What the operator before status.rollout wrote: read once by the old fields' precedence.
OLD_PAUSED = {k: v for k, v in PAUSED.items() if k != "rollout"}


def test_overview_row_of_a_paused_canary() -> None:
    row = views.overview_row(app(PAUSED), NOW)
    assert (row.phase, row.phase_class, row.step) == ("Paused", "paused", "2/4")
    assert row.weight == "25% (set 20%)"
    assert (row.ready, row.registered, row.registered_ok) == ("4/3", "4/4", True)
    assert row.revision == "2 (stable 1)"
    assert row.image == "shop:v2"
    assert row.age == "5m"
    assert row.id == "app-team-a--shop"


def test_flags_and_unknown_phase() -> None:
    row = views.overview_row(app({**ABORTED, "observedGeneration": 2, "phase": None}, paused=True, takenDown=True), NOW)
    assert row.flags == ("paused", "taken down", "aborted", "not yet seen")
    assert (row.phase, row.phase_class) == ("Unknown", "unknown")


def test_registration_error_marks_the_count() -> None:
    row = views.overview_row(app({"registration": {"summary": "2/3", "lastError": "unreachable"}}), NOW)
    assert (row.registered, row.registered_ok) == ("2/3 ⚠", False)


def test_counts_and_search() -> None:
    rows = [views.overview_row(app(PAUSED), NOW), views.overview_row(app({"phase": "Healthy"}), NOW)]
    counts = views.counts(rows)
    assert counts.total == 2 and counts.by_phase["Paused"] == 1 and counts.by_phase["Healthy"] == 1
    assert views.matches(app(PAUSED), "team-a", "shop paused")
    assert not views.matches(app(PAUSED), "team-b", "")
    assert not views.matches(app(PAUSED), "", "cart")


def test_steps_highlight_the_current_one_only_during_a_rollout() -> None:
    steps = views.steps(app()["spec"], PAUSED)
    assert [(s.number, s.label, s.state) for s in steps] == [
        (1, "set weight 20%", "done"), (2, "pause until promoted", "current"),
        (3, "set weight 50%", "pending"), (4, "pause 30s", "pending")]
    assert {s.state for s in views.steps(app()["spec"], {"currentStepIndex": 3, "rollout": {}})} == {"idle"}
    assert views.steps(app()["spec"], OLD_PAUSED) == steps


def test_the_rollout_state_is_read_from_status_rollout_not_the_derived_fields() -> None:
    # Derived fields that disagree (a status an older operator wrote over ours) change nothing.
    stale = {**PAUSED, "aborted": True, "abortReason": "Old", "currentStepIndex": 3}
    assert views.aborted(stale) is None and views.overview_row(app(stale), NOW).flags == ()
    assert [s.state for s in views.steps(app()["spec"], stale)][1] == "current"
    assert views.buttons(app(stale), may_patch=True).promote
    aborted = views.aborted(ABORTED)
    assert aborted is not None and (aborted.reason, aborted.message) == ("CrashLoop", "canary pod shop-b restarted 4 times")
    assert views.aborted(OLD_PAUSED) is None and views.buttons(app(OLD_PAUSED), may_patch=True).promote
    header = _templates().get_template("_section_header.html").render(
        key=("team-a", "shop"), status=ABORTED, spec={}, row=views.overview_row(app(ABORTED), NOW),
        aborted=views.aborted(ABORTED), conditions=[], errors={})
    assert "Aborted: CrashLoop canary pod shop-b restarted 4 times" in header
    first = {**PAUSED, "rollout": {"canary": {"phase": "Stepping", "step": 0, "stepStartTime": "2026-11-23T09:58:00Z"}}}
    assert ("rollout.canary.step", "0") in [(d.key, d.value) for d in views.details(first)]


def test_status_is_rendered_generically() -> None:
    status = {**PAUSED, "previewWeight": 10, "preview": {"revision": 3, "replicas": 2, "readyReplicas": 1},
              "hpa": {"desiredReplicas": 7, "reason": "cpu"}, "promoting": False}
    assert ("Preview weight", 10) in views.weights(status)
    assert [t.track for t in views.tracks(status)] == ["stable", "canary", "preview"]
    details = {d.key: d.value for d in views.details(status)}
    assert details == {"hpa.desiredReplicas": "7", "hpa.reason": "cpu", "rollout.canary.phase": "Stepping",
                       "rollout.canary.step": "1", "rollout.canary.stepStartTime": "2026-11-23T09:58:00Z",
                       "rollout.canary.pauseStartTime": "2026-11-23T09:58:10Z"}
    registration = views.registration(status)
    assert registration is not None
    assert registration.columns[-1] == "warmupSeconds"  # a field added later gets its column
    assert registration.more == "5 instances and 1 stale in all; status lists the first 1"


def test_buttons_follow_permission_and_state() -> None:
    assert views.buttons(app(PAUSED), may_patch=False) == views.Buttons()
    paused_canary = views.buttons(app(PAUSED), may_patch=True)
    assert paused_canary.promote and paused_canary.abort and not paused_canary.retry
    assert paused_canary.pause and not paused_canary.resume and paused_canary.take_down
    aborted = views.buttons(app(ABORTED, paused=True, takenDown=True), may_patch=True)
    assert aborted.retry and not aborted.promote and aborted.resume and aborted.bring_up


def test_tree_groups_pods_under_their_deployment_by_revision() -> None:
    deployments = [
        {"metadata": {"name": "shop", "labels": {"apprelease.io/track": "stable"},
                      "annotations": {"apprelease.io/revision": "1"}},
         "spec": {"replicas": 1}, "image": "shop:v1", "status": {"readyReplicas": 1}},
        {"metadata": {"name": "shop-canary", "labels": {"apprelease.io/track": "canary"},
                      "annotations": {"apprelease.io/revision": "10"}},
         "spec": {"replicas": 1}, "image": "shop:v2", "status": {}},
    ]
    pods = [{"metadata": {"name": "shop-canary-x", "labels": {"apprelease.io/track": "canary",
                                                               "apprelease.io/revision": "10"}},
             "status": {"phase": "Running", "containerStatuses": [
                 {"restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}]
    branches = views.tree(deployments, pods, offline=["shop-canary-x"])
    assert [b.revision for b in branches] == ["10", "1"]
    pod = branches[0].deployments[0].pods[0]
    assert (pod.mark, pod.restarts, pod.offline) == ("bad", 4, True)


def _templates() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(PACKAGE_DIR / "templates"), autoescape=True,
                              undefined=jinja2.ChainableUndefined)


def test_rows_escape_what_users_wrote() -> None:
    hostile = app({"phase": "Healthy", "message": '<script>alert("x")</script>'})
    html = _templates().get_template("_row.html").render(row=views.overview_row(hostile, NOW), oob=False)
    assert "<script>" not in html and "&lt;script&gt;" in html


@pytest.mark.parametrize("may_patch", [True, False])
def test_app_sections_render(may_patch: bool) -> None:
    env = _templates()
    status = PAUSED
    context = {"app": app(status), "key": ("team-a", "shop"), "spec": app()["spec"], "status": status, "now": NOW,
               "row": views.overview_row(app(status), NOW), "buttons": views.buttons(app(status), may_patch),
               "reads": {"deployments": True, "pods": True, "revisions": True, "events": False},
               "steps": views.steps(app()["spec"], status), "weights": views.weights(status),
               "tracks": views.tracks(status), "conditions": [{"type": "Ready", "status": "True"}],
               "tree": [], "registration": views.registration(status), "offline": ["shop-a"], "events": [],
               "history": [], "details": [], "errors": {}}
    actions = env.get_template("_section_actions.html").render(**context)
    registry = env.get_template("_section_registry.html").render(**context)
    rollout = env.get_template("_section_rollout.html").render(**context)
    events = env.get_template("_section_events.html").render(**context)
    assert ('hx-post="/apps/team-a/shop/actions/promote"' in actions) is may_patch
    assert ("Online" in registry) is may_patch  # shop-a is offline: the button brings it back
    assert "stale: no pod" in registry and "warmupSeconds" in registry
    assert 'class="step current" aria-current="step"' in rollout
    assert "You may not list Events" in events


HEALTHY_CONDITIONS = [
    {"type": "Ready", "status": "True", "reason": "Available"},
    {"type": "Reconciling", "status": "False", "reason": ""},
    {"type": "Stalled", "status": "False", "reason": ""},
    {"type": "Progressing", "status": "False", "reason": "Available"},
    {"type": "Paused", "status": "False", "reason": ""},
    {"type": "Registered", "status": "True", "reason": "AllRegistered"},
]


def test_conditions_show_their_truth_and_only_trouble_draws_the_eye() -> None:
    """A healthy app's Stalled=False used to look like a live Stalled chip."""
    healthy = views.conditions(HEALTHY_CONDITIONS)
    assert [(c.type, c.status) for c in healthy] == [(c["type"], c["status"]) for c in HEALTHY_CONDITIONS]
    assert {c.tone for c in healthy} == {"quiet"}  # nothing needs attention

    stalled = {c.type: c for c in views.conditions([
        {"type": "Ready", "status": "False", "reason": "ImagePullBackOff"},
        {"type": "Stalled", "status": "True", "reason": "ImagePullBackOff", "message": "fix spec.image"},
        {"type": "Reconciling", "status": "Unknown"},
        {"type": "Registered", "status": "False", "reason": "NotRegistered"},
        {"type": "Autoscaling", "status": "False", "reason": "HPATargetsDeployment"},
        {"type": "Paused", "status": "True", "reason": "CanaryPauseStep"},
        {"type": "SomethingNew", "status": "True"},
    ])}
    assert stalled["Stalled"].tone == "bad"  # abnormal-true: only True draws attention
    assert stalled["Ready"].tone == "warn" and stalled["Registered"].tone == "warn"  # normal-true: False does
    assert stalled["Autoscaling"].tone == "warn"
    assert stalled["Paused"].tone == "paused"
    assert stalled["Reconciling"].tone == "unknown" and stalled["Reconciling"].status == "Unknown"
    assert stalled["SomethingNew"].tone == "quiet"
    assert views.conditions([{"type": "Ready"}])[0].status == "Unknown"


def test_the_header_names_each_conditions_status() -> None:
    env = _templates()
    context = {"app": app({"phase": "Healthy"}), "key": ("team-a", "shop"), "spec": app()["spec"],
               "status": {"phase": "Healthy"}, "row": views.overview_row(app({"phase": "Healthy"}), NOW),
               "conditions": views.conditions(HEALTHY_CONDITIONS), "errors": {}}
    header = env.get_template("_section_header.html").render(**context)
    chips = re.findall(r'<li class="cond (\w+)"[^>]*>(\w+) <span class="cond-status">(\w+)</span>', header)
    assert chips == [("quiet", c["type"], c["status"]) for c in HEALTHY_CONDITIONS]


def test_instance_cells_colour_only_what_needs_attention() -> None:
    assert views.instance_cell("warming", False) == views.Cell("no", "")  # not warming up: normal
    assert views.instance_cell("warming", True) == views.Cell("yes", "busy")
    assert views.instance_cell("healthy", False) == views.Cell("no", "bad")
    assert views.instance_cell("healthy", True) == views.Cell("yes", "")
    assert views.instance_cell("enabled", False) == views.Cell("no", "off")
    assert views.instance_cell("ephemeral", False) == views.Cell("no", "")
    assert views.instance_cell("weight", None) == views.Cell("—", "")
    assert views.instance_cell("port", 8080) == views.Cell("8080", "")
    registry = _templates().get_template("_section_registry.html").render(
        registration=views.registration({"registration": {"summary": "1/1", "instances": [
            {"ip": "10.0.0.1", "port": 8080, "pod": "shop-a", "healthy": True, "enabled": True,
             "warming": False}]}}), buttons=views.Buttons(), offline=[], key=("team-a", "shop"))
    cells = re.findall(r"<td(?: class=\"(\w+)\")?>(yes|no)</td>", registry)
    assert cells == [("", "yes"), ("", "yes"), ("", "no")]  # healthy, enabled, warming: none coloured


def test_the_registry_section_shows_the_nacos_config_copies_and_their_readers() -> None:
    status = {"config": {"nacos": {"namespace": "public", "items": [{
        "dataId": "shop.yaml", "group": "SHOP", "md5": "m1", "revisions": {"h1": "m1"}}],
        "drift": [{"group": "SHOP", "dataId": "shop.yaml", "md5": "m9", "savedTo": "SHOP.drift-m9"}]}}}
    rows = views.nacos_config(status, [], [{"metadata": {"name": "shop-a", "labels": {"apprelease.io/revision": "1"}}}])
    assert [(r["group"], r["md5"]) for r in rows] == [("SHOP", "m1"), ("SHOP.rev-h1", "m1")]
    html = _templates().get_template("_section_registry.html").render(
        registration=None, nacos_config=rows, buttons={}, key=("team-a", "shop"), offline=[])
    assert "Nacos config" in html and "SHOP.rev-h1" in html and "SHOP.drift-m9" in html
    assert views.nacos_config({"config": {"nacos": {"items": "not a list"}}}, [], []) == []
    assert views.nacos_config({}, [], []) == []


def test_an_analysis_step_is_labelled_with_its_templates() -> None:
    spec = {"strategy": {"canary": {"steps": [{"setWeight": 20}, {"analysis": {"templates": [
        {"templateName": "error-rate"}, {"templateName": "latency", "clusterScope": True}]}}]}}}
    assert [s.label for s in views.steps(spec, {})] == ["set weight 20%", "analysis error-rate, latency"]


STEP_ANALYSIS = {
    "run": "h2/step-1/t", "phase": "Failed",
    "message": "metric errors (error-rate) failed: errors returned [0.5]; successCondition result[0] < 0.01",
    "metrics": [{"name": "errors", "template": "error-rate", "phase": "Failed", "count": 4, "successful": 2,
                 "failed": 1, "error": 1, "message": "2 failed measurement(s) > failureLimit 1; last [0.5]",
                 "measurements": [
                     {"phase": "Successful", "at": "2026-12-01T10:00:00Z", "value": "[0.001, 0.002]"},
                     {"phase": "Error", "at": "2026-12-01T10:00:10Z", "value": "[nan]",
                      "message": "condition not evaluable"},
                     {"phase": "Successful", "at": "2026-12-01T10:00:20Z", "value": "[0.004]"},
                     {"phase": "Failed", "at": "2026-12-01T10:00:30Z", "value": "[0.5]"}]}]}
BACKGROUND_ANALYSIS = {"run": "h2/background/t", "phase": "Running", "metrics": [
    {"name": "latency", "template": "p99", "phase": "Running", "count": 1, "inconclusive": 1, "measurements": [
        {"phase": "Inconclusive", "at": "2026-12-01T10:00:05Z", "value": "",
         "message": "prometheus unreachable"}]}]}


def _analysis_section(status: dict[str, Any]) -> str:
    from apprelease.console import analysis

    return _templates().get_template("_section_analysis.html").render(analysis=analysis.runs(status))


def test_the_analysis_section_shows_each_metric_its_measurements_and_a_chart_of_the_numbers() -> None:
    html = _analysis_section({"analysis": {"step": STEP_ANALYSIS, "background": BACKGROUND_ANALYSIS}})
    assert "Analysis" in html and "Background analysis" in html
    assert "successCondition result[0] &lt; 0.01" in html  # the condition, escaped like any text
    assert "errors" in html and "error-rate" in html and "4 measured (2 ok, 1 failed, 0 inconclusive, 1 errors)" in html
    assert "2 failed measurement(s) &gt; failureLimit 1" in html
    for value in ("[0.001, 0.002]", "[nan]", "[0.004]", "[0.5]"):
        assert value in html
    assert "2026-12-01T10:00:30Z" in html and "condition not evaluable" in html
    assert html.index("[0.5]") < html.index("[0.004]")  # newest first
    charts = re.findall(r"<svg[^>]*>.*?</svg>", html, re.S)
    assert len(charts) == 1  # the background metric measured no number: no chart, said so
    assert "no numbers" in html and "prometheus unreachable" in html
    points = re.findall(r'<circle class="point (\w+)" cx="([\d.]+)" cy="([\d.]+)"', charts[0])
    assert [p[0] for p in points] == ["ok", "ok", "bad"]  # NaN skipped; coloured by verdict
    xs, ys = [float(p[1]) for p in points], [float(p[2]) for p in points]
    assert xs == sorted(xs) and ys[2] < ys[1] < ys[0]  # oldest left; the highest value on top


def test_the_analysis_chart_plots_the_first_number_and_skips_what_is_not_one() -> None:
    from apprelease.api.analysis import MeasurementStatus
    from apprelease.console import analysis

    assert [analysis.first_number(v) for v in ("[0.5]", "[0.001, 0.002]", "[nan]", "[inf]", "", "[]", "ok")] == [
        0.5, 0.001, None, None, None, None, None]
    flat = analysis.chart([MeasurementStatus(phase="Successful", at="t", value="[1]")] * 3)
    assert flat is not None and {p.y for p in flat.points} == {flat.height / 2}
    single = analysis.chart([MeasurementStatus(phase="Failed", at="t", value="[2]")])
    assert single is not None and len(single.points) == 1 and single.points[0].verdict == "bad"
    assert analysis.chart([MeasurementStatus(phase="Error", at="t", value="")]) is None


def test_the_analysis_section_is_absent_without_analysis_and_escapes_metric_names() -> None:
    assert _analysis_section({}).strip() == ""
    assert _analysis_section({"analysis": "not a mapping"}).strip() == ""  # another version's status: not shown
    hostile = {**STEP_ANALYSIS, "metrics": [{**STEP_ANALYSIS["metrics"][0], "name": '<script>alert("x")</script>'}]}
    html = _analysis_section({"analysis": {"step": hostile}})
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert views.details({"analysis": {"step": STEP_ANALYSIS}}) == []  # shown in its own section only


def test_the_app_page_redraws_the_analysis_section_from_the_cached_app() -> None:
    """The analysis is a section of its own: drawn with the page and sent again when it changes."""
    from types import SimpleNamespace

    from apprelease.console import app_page

    class Store:
        kind, error = "Deployment", None

        def __init__(self, apps: dict | None = None) -> None:
            self.apps = apps or {}

        def get(self, key: tuple[str, str]) -> dict | None:
            return self.apps.get(key)

        def of_app(self, _key: tuple[str, str]) -> list:
            return []

    def page_of(status: dict[str, Any]) -> dict[str, str]:
        watches = SimpleNamespace(apps=Store({("team-a", "shop"): app(status)}), revisions=Store(),
                                  deployments=Store(), pods=Store(), events_of=lambda _key: [],
                                  detail_stores=lambda: (Store(),))
        env = _templates()
        console = SimpleNamespace(watches=watches,
                                  render=lambda name, **context: env.get_template(name).render(**context))
        reads = {"deployments": True, "pods": True, "revisions": True, "events": True, "logs": False}
        return app_page.sections(console, ("team-a", "shop"), app_page.Permissions(True, False, reads))  # type: ignore[arg-type]

    assert page_of(PAUSED)["analysis"].strip() == ""
    drawn = page_of({**PAUSED, "analysis": {"step": STEP_ANALYSIS}})
    assert "<svg" in drawn["analysis"] and "[0.5]" in drawn["analysis"]
    assert "[0.5]" not in drawn["details"]
    page = (PACKAGE_DIR / "templates" / "app.html").read_text()
    assert '<section id="sec-analysis">{{ sections.analysis | safe }}</section>' in page
