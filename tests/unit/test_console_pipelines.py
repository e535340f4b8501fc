"""The console's pipeline page, its pure parts: what a promotion would change, soak progress,
gate wording, and the live part as the template renders it."""

from __future__ import annotations

from datetime import UTC, datetime

import jinja2

from apprelease.console.context import PACKAGE_DIR
from apprelease.console.pipelines import StageCard, gate_text, soak_progress
from apprelease.rollout.diff import AppDiff, artifact_diffs
from apprelease.rollout.pipeline import Artifact

NOW = datetime(2026, 12, 4, 12, 0, 30, tzinfo=UTC)
V1 = Artifact("shop:v1", {"app.yml": "greeting: hello\nport: 8080\n"}, ({"dataId": "shop.yaml", "content": "a: 1\n"},))
V2 = Artifact("shop:v2", {"app.yml": "greeting: hi\nport: 8080\n"}, ({"dataId": "shop.yaml", "content": "a: 2\n"},))


def test_the_diff_shows_image_files_and_nacos_items_of_each_app() -> None:
    [shop, cart] = sorted(artifact_diffs({"shop": V1, "cart": None}, {"shop": V2, "cart": V1}),
                          key=lambda d: d.app != "shop")
    assert [(f.field, f.left, f.right) for f in shop.fields] == [("image", "shop:v1", "shop:v2")]
    files = {f.name: f for f in shop.files}
    assert set(files) == {"app.yml", "Nacos shop.yaml (DEFAULT_GROUP)"} and all(f.changed for f in files.values())
    changed = [(line.left, line.right) for line in files["app.yml"].lines if line.kind == "changed"]
    assert changed == [("greeting: hello", "greeting: hi")]
    assert cart.new_app and not shop.new_app and not shop.identical
    assert artifact_diffs({"shop": V1}, {"shop": V1})[0].identical


def test_soak_progress_and_gate_wording() -> None:
    gate = {"auto": {"soakSeconds": 60}}
    assert soak_progress(gate, {"healthySince": "2026-12-04T12:00:00Z"}, NOW) == "soaked 30s of 60s"
    assert soak_progress(gate, {"healthySince": "2026-12-04T11:00:00Z"}, NOW) == "soaked 60s of 60s"
    assert soak_progress({"manual": {}}, {"healthySince": "2026-12-04T12:00:00Z"}, NOW) == ""
    assert soak_progress(gate, {}, NOW) == ""
    assert gate_text(None).startswith("entry") and gate_text({"manual": {}}) == "manual approval"
    assert gate_text(gate) == "automatic after 60s healthy"


def render_live(may_decide: bool) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(PACKAGE_DIR / "templates"), autoescape=True,
                             undefined=jinja2.ChainableUndefined)
    pending = {"stage": "prod", "digest": "d2", "reason": "WaitingForApproval", "since": "2026-12-04T12:00:00Z",
               "message": "waiting"}
    card = StageCard("prod", "x", "manual approval", {"digest": "d1", "apps": [{"name": "shop", "image": "shop:v1"}]},
                     pending=[pending], may_decide=may_decide,
                     diffs={"d2": [AppDiff("shop", [], [])]})
    history = [{"at": "2026-12-04T12:00:00Z", "stage": "prod", "fromStage": "pre", "digest": "d0",
                "decision": "Rejected", "by": "jane"}]
    return env.get_template("_pipeline_live.html").render(pipeline={"status": {}}, cards=[card], history=history,
                                                         base="/pipelines/p/shop")


def test_the_buttons_show_only_to_who_may_decide() -> None:
    allowed, denied = render_live(True), render_live(False)
    assert 'hx-post="/pipelines/p/shop/stages/prod/approve"' in allowed and ">Reject</button>" in allowed
    assert "hx-post" not in denied and "WaitingForApproval" in denied and "d2" in denied
    assert "jane" in denied and "pre → prod" in denied
