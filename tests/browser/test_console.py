"""The console in a real browser (Debian's headless Chromium) against the real local control
plane and the real operator: what a user coming from Rancher does, click by click.

Every wait polls a condition in the page (Playwright's expect, with a timeout); a page that
updates without being reloaded is checked by counting navigations.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.plugins.cluster import KubeCluster, wait_for
from tests.plugins.operator import AppReleases
from tests.plugins.pipeline import Stages, app

from .conftest import EDIT_RULES, REBOUND_NAME, VIEW_RULES, Identities, StartConsole

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
ROLLOUT_TIMEOUT = 60_000  # ms: the operator, the controllers and KWOK at work on 2 shared cores


def app_url(console_url: str, namespace: str, name: str) -> str:
    return f"{console_url}apps/{namespace}/{name}"


def count_navigations(page: Page) -> list[str]:
    seen: list[str] = []
    page.on("framenavigated", lambda frame: seen.append(frame.url) if frame == page.main_frame else None)
    return seen


def accept_dialogs(page: Page) -> list[str]:
    """Accept every confirmation, remembering what it asked."""
    asked: list[str] = []

    def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    return asked


def settled(page: Page) -> None:
    """htmx has swapped and wired up what it received (a person is slower than its 20 ms)."""
    expect(page.locator(".htmx-request, .htmx-swapping, .htmx-settling, .htmx-added")).to_have_count(0)


def phase(page: Page) -> Any:
    return page.locator("#sec-header #phase")


def test_deploy_with_the_form_then_edit_promote_and_roll_back(
    start_console: StartConsole, page: Page, namespace: str, arl: AppReleases, screenshots: Path,
) -> None:
    console = start_console()
    asked = accept_dialogs(page)

    # The overview loads and shows its live counts.
    page.goto(console.url)
    expect(page.locator("#counts")).to_contain_text("app")

    # Deploy form: fields, a Secret reference, a config file, a canary strategy; the YAML
    # preview follows what is typed.
    page.get_by_role("link", name="+ Deploy an app").click()
    page.fill("#f-name", "shop")
    page.fill("#f-namespace", namespace)
    page.fill("#f-image", "registry.local/shop:v1")
    page.fill("#f-replicas", "2")
    page.fill("#f-port", "8080")
    page.fill("#f-env-0-name", "GREETING")
    page.fill("#f-env-0-value", "hello")
    page.get_by_role("button", name="+ Variable").click()
    settled(page)
    page.select_option("#f-env-1-source", "secret")
    expect(page.locator("#f-env-1-ref-name")).to_be_visible()
    settled(page)
    expect(page.locator("#f-env-1-value")).to_have_count(0)  # a Secret's value is never asked for
    page.fill("#f-env-1-name", "DB_PASSWORD")
    page.fill("#f-env-1-ref-name", "shop-secret")
    page.fill("#f-env-1-ref-key", "password")
    page.fill("#f-config-mount", "/etc/shop")
    page.fill("#f-file-0-name", "app.yml")
    page.fill("#f-file-0-content", "greeting: hello\nport: 8080\n")
    page.select_option("#f-strategy", "canary")
    settled(page)
    page.fill("#f-canary-steps", "50, pause")
    yaml_preview = page.locator("#yaml")
    expect(yaml_preview).to_contain_text("image: registry.local/shop:v1")
    expect(yaml_preview).to_contain_text("secretKeyRef:")
    expect(yaml_preview).to_contain_text("setWeight: 50")
    page.get_by_role("button", name="Validate").click()
    expect(page.locator(".message.ok")).to_contain_text("accepts this AppRelease (dry run)")
    assert arl.cluster.kubectl("get", "appreleases", "-n", namespace, "-o", "name").stdout.strip() == ""

    page.get_by_role("button", name="Deploy").click()
    page.wait_for_url(re.compile(rf"/apps/{namespace}/shop$"))
    spec = arl.get("shop")["spec"]
    assert spec["env"][1] == {"name": "DB_PASSWORD",
                              "valueFrom": {"secretKeyRef": {"name": "shop-secret", "key": "password"}}}
    assert spec["config"]["files"] == {"app.yml": "greeting: hello\nport: 8080\n"}

    # It becomes Healthy in front of us, without a reload.
    navigations = count_navigations(page)
    expect(phase(page)).to_have_text("Healthy", timeout=ROLLOUT_TIMEOUT)
    expect(page.locator("#sec-tree .pod.ok")).to_have_count(2, timeout=ROLLOUT_TIMEOUT)
    expect(page.locator("#sec-registry")).to_contain_text("2/2", timeout=ROLLOUT_TIMEOUT)
    assert navigations == [], f"the page reloaded: {navigations}"

    # Take one instance out of traffic and back, from the instance table.
    first_pod = page.locator("#sec-registry table.instances tbody tr").first.locator("td").nth(2).inner_text()
    page.locator("#sec-registry table.instances tbody tr").first.get_by_role("button", name="Offline").click()
    expect(page.locator("#result .message.ok")).to_contain_text(f"shop: offline pods: {first_pod}")
    assert asked[-1] == f"Take {first_pod} offline (no traffic, pod keeps running)?"
    annotations = arl.get("shop")["metadata"]["annotations"]
    assert annotations["apprelease.io/offline"] == first_pod
    online = page.locator("#sec-registry").get_by_role("button", name="Online")
    expect(online).to_have_count(1)
    online.click()
    expect(page.locator("#result .message.ok")).to_contain_text("shop: offline pods: none")
    wait_for(lambda: "apprelease.io/offline" not in (arl.get("shop")["metadata"].get("annotations") or {}),
             30, message="the offline annotation removed")

    # Change the image with the edit form: a canary starts and pauses at step 2.
    page.get_by_role("link", name="Edit", exact=True).click()
    expect(page.locator("#f-image")).to_have_value("registry.local/shop:v1")
    expect(page.locator("#f-env-1-ref-name")).to_have_value("shop-secret")
    page.fill("#f-image", "registry.local/shop:v2")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(rf"/apps/{namespace}/shop$"))
    navigations = count_navigations(page)
    expect(phase(page)).to_have_text("Paused", timeout=ROLLOUT_TIMEOUT)
    current = page.locator("#sec-rollout .step.current")
    expect(current).to_have_count(1)
    expect(current).to_contain_text("pause until promoted")
    expect(page.locator("#sec-rollout .weights")).to_contain_text("Actual weight", timeout=ROLLOUT_TIMEOUT)
    expect(page.locator("#sec-tree")).to_contain_text("shop-canary", timeout=ROLLOUT_TIMEOUT)

    # Promote with the button: a confirmation, then the result; the rollout completes live.
    page.get_by_role("button", name="Promote", exact=True).click()
    expect(page.locator("#result .message.ok")).to_contain_text("shop: promotion requested")
    assert asked[-1] == "Promote shop to the next step?"
    expect(phase(page)).to_have_text("Healthy", timeout=ROLLOUT_TIMEOUT)
    expect(page.locator("#sec-header")).to_contain_text("registry.local/shop:v2")
    expect(page.locator("#sec-history tr.current")).to_contain_text("registry.local/shop:v2", timeout=ROLLOUT_TIMEOUT)

    # The diff of the two revisions: image, env and the config file side by side.
    page.fill("input[name=a]", "1")
    page.fill("input[name=b]", "2")
    page.get_by_role("button", name="Show differences").click()
    changed = page.locator("#diff tr.changed")
    expect(changed).to_have_count(1)
    expect(changed).to_contain_text("registry.local/shop:v1")
    expect(changed).to_contain_text("registry.local/shop:v2")
    expect(page.locator("#diff")).to_contain_text("from secret shop-secret/password")

    # Roll back to revision 1 from the history table.
    page.get_by_role("button", name="Roll back to 1").click()
    expect(page.locator("#result .message.ok")).to_contain_text("rolling back to revision 1 (registry.local/shop:v1)")
    assert "back to revision 1" in asked[-1]
    expect(page.locator("#sec-header")).to_contain_text("registry.local/shop:v1", timeout=ROLLOUT_TIMEOUT)
    expect(phase(page)).to_have_text("Healthy", timeout=ROLLOUT_TIMEOUT)
    expect(page.locator("#sec-history tr.current")).to_contain_text("registry.local/shop:v1", timeout=ROLLOUT_TIMEOUT)
    assert navigations == [], f"the page reloaded: {navigations}"
    assert arl.get("shop")["spec"]["image"] == "registry.local/shop:v1"


def test_the_form_puts_the_apiservers_message_next_to_the_field(
    start_console: StartConsole, page: Page, namespace: str, arl: AppReleases,
) -> None:
    console = start_console()
    page.goto(f"{console.url}new?ns={namespace}")
    page.fill("#f-name", "badimage")
    page.fill("#f-image", "registry.local/has space:v1")
    page.fill("#f-cpu-request", "a lot")
    page.get_by_role("button", name="Validate").click()
    image_error = page.locator("#error-image")
    expect(image_error).to_contain_text("should match")
    expect(page.locator("label[for=f-image]")).to_have_class(re.compile("invalid"))
    expect(page.locator("#error-resources")).to_contain_text("quantit")
    page.get_by_role("button", name="Deploy").click()
    expect(page.locator("#error-image")).to_contain_text("should match")
    assert arl.cluster.kubectl("get", "appreleases", "-n", namespace, "-o", "name").stdout.strip() == ""


def _canary_app(name: str, image: str = "registry.local/ro:v1", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease", "metadata": {"name": name},
            "spec": {"image": image, "replicas": 1, "port": 8080,
                     "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}, **spec}}


def _forge(page: Page, console_url: str, namespace: str, name: str, action: str = "promote") -> Any:
    token = page.locator("meta[name=csrf-token]").get_attribute("content")
    return page.request.post(f"{console_url}apps/{namespace}/{name}/actions/{action}",
                             headers={"X-CSRF-Token": token or ""})


def _assert_read_only_view(page: Page, console_url: str, namespace: str, arl: AppReleases) -> None:
    page.goto(app_url(console_url, namespace, "ro"))
    expect(phase(page)).to_have_text("Healthy", timeout=ROLLOUT_TIMEOUT)
    expect(page.locator("#sec-tree .pod")).to_have_count(1, timeout=ROLLOUT_TIMEOUT)
    expect(page.locator("#sec-actions button")).to_have_count(0)
    expect(page.locator("#sec-history button, #sec-registry button")).to_have_count(0)
    expect(page.get_by_role("link", name="Edit", exact=True)).to_have_count(0)
    response = _forge(page, console_url, namespace, "ro")
    assert response.status == 403, response.text()
    assert "forbidden" in response.text()
    assert "apprelease.io/promote" not in (arl.get("ro")["metadata"].get("annotations") or {})
    page.goto(console_url)
    expect(page.locator(f"#app-{namespace}--ro")).to_be_visible()
    expect(page.get_by_role("link", name="+ Deploy an app")).to_have_count(0)


def test_a_read_only_user_sees_no_buttons_and_gets_403_on_a_forged_request(
    start_console: StartConsole, page: Page, namespace: str, arl: AppReleases, identities: Identities,
) -> None:
    arl.apply(_canary_app("ro"))
    arl.wait_phase("ro", "Healthy", timeout=60)
    token = identities.service_account("viewer", VIEW_RULES)
    console = start_console(kubeconfig=identities.kubeconfig("viewer", token))
    _assert_read_only_view(page, console.url, namespace, arl)
    # Without a CSRF token the console refuses before asking anyone.
    refused = page.request.post(f"{console.url}apps/{namespace}/ro/actions/promote")
    assert refused.status == 403 and "CSRF" in refused.text()


def test_a_website_rebound_to_this_machine_gets_nothing(
    start_console: StartConsole, page: Page, namespace: str, arl: AppReleases,
) -> None:
    """DNS rebinding: Chromium resolves a website's name to 127.0.0.1, as after the attack.
    Its pages reach the console's port, but the console answers that name 403: no page, no
    session cookie, no CSRF token, and a POST of its own changes nothing."""
    arl.apply(_canary_app("ro"))
    console = start_console()
    port = console.url.rstrip("/").rsplit(":", 1)[1]
    rebound = f"http://{REBOUND_NAME}:{port}/"
    answer = page.goto(rebound)
    assert answer is not None and answer.status == 403
    assert "csrf" not in page.content().lower()
    assert page.context.cookies() == []
    posted = page.evaluate(
        """async (url) => (await fetch(url, {method: "POST"})).status""",
        f"{rebound}apps/{namespace}/ro/actions/pause")
    assert posted == 403
    assert page.context.cookies() == []
    # The same browser, at the console's own address, is served.
    served = page.goto(console.url)
    assert served is not None and served.status == 200
    assert arl.get("ro")["spec"].get("paused") is False  # its POST changed nothing


@pytest.mark.parametrize("mode", ["token", "impersonation"])
def test_in_cluster_modes_act_as_the_user_behind_the_proxy(
    start_console: StartConsole, browser: Any, namespace: str, arl: AppReleases, identities: Identities,
    mode: str,
) -> None:
    """The console's own identity (here: the admin kubeconfig) watches; each user acts as
    themselves: their bearer token passed through, or impersonated from the proxy's headers."""
    arl.apply(_canary_app("ro"))
    arl.wait_phase("ro", "Healthy", timeout=60)
    console = start_console("--auth", mode)
    if mode == "token":
        viewer = {"Authorization": f"Bearer {identities.service_account('viewer', VIEW_RULES)}"}
        editor = {"Authorization": f"Bearer {identities.service_account('editor', EDIT_RULES)}"}
    else:
        identities.user(f"viewer-{identities.suffix}@example.com", VIEW_RULES)
        identities.user(f"editor-{identities.suffix}@example.com", EDIT_RULES)
        viewer = {"X-Forwarded-User": f"viewer-{identities.suffix}@example.com", "X-Forwarded-Groups": "team-a"}
        editor = {"X-Forwarded-User": f"editor-{identities.suffix}@example.com"}

    anonymous = browser.new_context()
    try:
        assert anonymous.new_page().goto(console.url).status == 401
    finally:
        anonymous.close()

    for headers, may_act in ((viewer, False), (editor, True)):
        context = browser.new_context(extra_http_headers=headers, viewport={"width": 1400, "height": 900})
        try:
            page = context.new_page()
            if not may_act:
                _assert_read_only_view(page, console.url, namespace, arl)
                continue
            page.goto(app_url(console.url, namespace, "ro"))
            expect(page.get_by_role("button", name="Pause")).to_be_visible()
            accept_dialogs(page)
            page.get_by_role("button", name="Pause").click()
            expect(page.locator("#result .message.ok")).to_contain_text("ro paused")
            wait_for(lambda: arl.get("ro")["spec"].get("paused") is True, 30, message="spec.paused")
            expect(page.get_by_role("button", name="Resume")).to_be_visible(timeout=ROLLOUT_TIMEOUT)
        finally:
            context.close()


def test_one_watch_per_kind_however_many_pages_are_open(
    start_console: StartConsole, browser: Any, namespace: str, arl: AppReleases, kube_cluster: KubeCluster,
) -> None:
    for name in ("one", "two"):
        arl.apply(_canary_app(name))
    arl.wait_phase("two", "Healthy", timeout=60)
    console = start_console()
    contexts = [browser.new_context() for _ in range(3)]
    try:
        pages = []
        for i, context in enumerate(contexts):
            for target in (console.url, app_url(console.url, namespace, ("one", "two")[i % 2])):
                page = context.new_page()
                page.goto(target)
                pages.append(page)
        for page in pages:
            expect(page.locator("#counts, #sec-header #phase").first).to_be_visible()
        def three_app_pages() -> dict[str, float] | None:
            metrics = console.metrics()
            return metrics if metrics.get("apprelease_console_streams_open{page=app}") == 3 else None

        metrics = wait_for(three_app_pages, 30, message="three app pages connected")
        assert metrics["apprelease_console_streams_open{page=overview}"] == 3
        for kind in ("AppRelease", "Deployment", "Pod", "ControllerRevision", "Event"):
            assert metrics[f"apprelease_console_watches_open{{kind={kind}}}"] == 1, kind
            assert metrics[f"apprelease_console_watch_requests_total{{kind={kind},verb=list}}"] == 1, kind

        # A status change reaches every open page.
        arl.patch("one", {"spec": {"image": "registry.local/ro:v2"}})
        for page in pages:
            if page.url.endswith("/one"):
                expect(phase(page)).to_have_text("Paused", timeout=ROLLOUT_TIMEOUT)
            elif "/apps/" not in page.url:
                expect(page.locator(f"#app-{namespace}--one")).to_contain_text("Paused", timeout=ROLLOUT_TIMEOUT)
    finally:
        for context in contexts:
            context.close()


def test_overview_and_app_page_read_at_a_glance(
    start_console: StartConsole, page: Page, kube_cluster: KubeCluster, operator: Any, screenshots: Path,
) -> None:
    """A small estate in every phase; the screenshots in docs/ come from here."""
    suffix = uuid.uuid4().hex[:4]
    # e2e- like every test namespace: the idleness tests wait until these are gone too.
    namespaces = {"orders": f"e2e-orders-{suffix}", "payments": f"e2e-payments-{suffix}"}
    for name in namespaces.values():
        kube_cluster.kubectl("create", "namespace", name)
    try:
        orders, payments = (AppReleases(kube_cluster, ns) for ns in namespaces.values())
        wait_for(lambda: all(kube_cluster.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0
                             for ns in namespaces.values()), 30, message="namespaces ready")
        canary = {"canary": {"steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "10m"}}]}}
        config = {"mountPath": "/app/config", "files": {"application.yml": "server:\n  port: 8080\n"}}
        for app, body in (
            (orders, _canary_app("order-service", "harbor.company.com/order/order-service:20250920v1",
                                 replicas=3, strategy=canary, config=config)),
            (orders, _canary_app("cart", "harbor.company.com/order/cart:1.4.2", replicas=2, strategy={})),
            (orders, _canary_app("inventory", "harbor.company.com/order/inventory:3.0.0", replicas=2,
                                 strategy={}, podTemplate={"spec": {"nodeSelector": {"disktype": "none-here"}}})),
            (payments, _canary_app("payment-gateway", "harbor.company.com/pay/gateway:2.7.0", replicas=2,
                                   strategy=canary)),
            (payments, _canary_app("invoice", "harbor.company.com/pay/invoice:5.1.0", replicas=1, strategy={})),
        ):
            app.apply(body)
        for app, name in ((orders, "order-service"), (orders, "cart"), (payments, "payment-gateway"),
                          (payments, "invoice")):
            app.wait_phase(name, "Healthy", timeout=90)
        orders.patch("order-service", {"spec": {"image": "harbor.company.com/order/order-service:20251002v2"}})
        payments.patch("payment-gateway", {"spec": {"image": "harbor.company.com/pay/gateway:2.8.0"}})
        payments.wait_phase("payment-gateway", "Paused", timeout=90)
        payments.patch("payment-gateway", {"metadata": {"annotations": {"apprelease.io/abort": "screenshot"}}})
        orders.wait_phase("order-service", "Paused", timeout=90)
        payments.wait(name="payment-gateway", predicate=lambda s: s.get("phase") == "Degraded", timeout=90)

        console = start_console()
        page.goto(f"{console.url}?q={suffix}")
        rows = page.locator("#rows tr")
        expect(rows).to_have_count(5)
        expected = {"order-service": ("Paused", "paused"), "cart": ("Healthy", "ok"),
                    "inventory": ("Progressing", "busy"), "payment-gateway": ("Degraded", "bad"),
                    "invoice": ("Healthy", "ok")}
        for name, (phase_text, css) in expected.items():
            namespace = namespaces["payments" if name in ("payment-gateway", "invoice") else "orders"]
            badge = page.locator(f"#app-{namespace}--{name} .badge")
            expect(badge).to_have_text(phase_text, timeout=ROLLOUT_TIMEOUT)
            expect(badge).to_have_class(re.compile(rf"\b{css}\b"))
        counts = page.locator("#counts")
        expect(counts).to_contain_text("5 apps")
        expect(counts).to_contain_text("2 Healthy")
        expect(counts).to_contain_text("1 Degraded")
        expect(page.locator(f"#app-{namespaces['orders']}--order-service")).to_contain_text("2/4")
        page.screenshot(path=str(screenshots / "console-overview.png"))

        page.goto(app_url(console.url, namespaces["orders"], "order-service"))
        expect(page.locator("#sec-rollout .step.current")).to_contain_text("pause until promoted")
        expect(page.locator("#sec-registry table.instances tbody tr")).to_have_count(4, timeout=ROLLOUT_TIMEOUT)
        expect(page.locator("#sec-tree .pod.ok")).to_have_count(4, timeout=ROLLOUT_TIMEOUT)
        page.screenshot(path=str(screenshots / "console-app.png"), full_page=True)
    finally:
        for name in namespaces.values():
            kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


LOG_RULES = [*VIEW_RULES, {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]


def test_pod_logs_follow_live_for_who_may_read_them(
    start_console: StartConsole, page: Page, namespace: str, arl: AppReleases, identities: Identities,
    kube_cluster: KubeCluster,
) -> None:
    """The notes' 日志查看: from the app page to a pod's log, following as lines come, read as
    the user (RBAC `pods/log`); a viewer without that right gets no link and a 403."""
    arl.apply(_canary_app("ro"))
    arl.wait_phase("ro", "Healthy", timeout=60)
    before = f"started {uuid.uuid4().hex}"
    kube_cluster.print_to_pod_logs(before)

    reader = start_console(kubeconfig=identities.kubeconfig(
        "log-reader", identities.service_account("log-reader", LOG_RULES)))
    page.goto(app_url(reader.url, namespace, "ro"))
    expect(page.locator("#sec-tree .pod")).to_have_count(1, timeout=ROLLOUT_TIMEOUT)
    navigations = count_navigations(page)
    page.locator("#sec-tree .pod a.logs").click()
    expect(page.locator("#log")).to_contain_text(before, timeout=ROLLOUT_TIMEOUT)
    live = f"served request {uuid.uuid4().hex}"
    kube_cluster.print_to_pod_logs(live)
    expect(page.locator("#log")).to_contain_text(live, timeout=ROLLOUT_TIMEOUT)
    assert len(navigations) == 1, navigations  # the click; the line came without a reload

    viewer = start_console(kubeconfig=identities.kubeconfig(
        "viewer", identities.service_account("viewer", VIEW_RULES)))
    page.goto(app_url(viewer.url, namespace, "ro"))
    expect(page.locator("#sec-tree .pod")).to_have_count(1, timeout=ROLLOUT_TIMEOUT)
    expect(page.locator("#sec-tree a.logs")).to_have_count(0)
    pod = page.locator("#sec-tree .pod").first.inner_text().split()[0]
    for path in (f"apps/{namespace}/ro/logs?pod={pod}", f"events/apps/{namespace}/ro/logs?pod={pod}"):
        refused = page.request.get(viewer.url + path)
        assert refused.status == 403 and "pods/log" in refused.text(), (path, refused.status, refused.text())


# What the pipeline page reads as the user (its own reads; the approve right is per stage).
PIPELINE_READS = [
    *VIEW_RULES,
    {"apiGroups": ["apprelease.io"], "resources": ["releasepipelines", "releaseapprovals"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
]


def _waiting_for_prod(stages: Stages, image: str, greeting: str) -> str:
    """Release ``image`` in test; it goes to pre by itself and waits for prod: its digest."""
    stages.apply(stages.test, app(image, {"application.yml": f"greeting: {greeting}\n"}, 1, "test"))
    waiting = stages.wait_status(
        lambda s: [(p["stage"], p["reason"]) for p in s.get("pending") or []] == [("prod", "WaitingForApproval")]
        and stages.stage(s, "pre")["apps"][0]["image"] == image, f"{image} waiting for prod", timeout=150)
    return str(waiting["pending"][0]["digest"])


def test_pipeline_page_approves_and_rejects_as_the_user(
    start_console: StartConsole, browser: Any, stages: Stages, identities: Identities, screenshots: Path,
) -> None:
    """The issue's human click: the stages side by side with what waits and the diff of what is
    about to go; a viewer gets no button and a 403 from the apiserver; an approver's click
    creates the ReleaseApproval as them (the admission policy records their name), prod releases."""
    stages.three_stages({"application.yml": "greeting: hello\n"}, replicas=(1, 1, 2), soak_seconds=0)
    v2 = _waiting_for_prod(stages, "registry.local/shop:v2", "hi")
    consoles = {}
    for account, may_approve in (("viewer", False), ("approver", True)):
        kubeconfig, user = stages.user(account, approve=may_approve)
        identities.role(account, PIPELINE_READS, {"kind": "ServiceAccount", "name": account, "namespace": stages.prod})
        consoles[account] = (start_console("-n", stages.pipelines, kubeconfig=kubeconfig), user)
    pipeline_path = f"pipelines/{stages.pipelines}/shop"

    # The viewer: the list, the page, what waits and the diff, but no button; forging the
    # request gets the apiserver's 403 as a readable message, and nothing is created.
    viewer_console, _ = consoles["viewer"]
    viewer_context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = viewer_context.new_page()
    page.set_default_timeout(15_000)
    page.goto(viewer_console.url + "pipelines")
    page.get_by_role("link", name="shop").click()
    page.wait_for_url(re.compile(rf"/{pipeline_path}$"))
    for stage, namespace in (("test", stages.test), ("pre", stages.pre), ("prod", stages.prod)):
        card = page.locator(f"#stage-{stage}")
        expect(card).to_contain_text(namespace)
    expect(page.locator("#stage-test")).to_contain_text("registry.local/shop:v2")
    expect(page.locator("#stage-prod")).to_contain_text("registry.local/shop:v1")
    expect(page.locator("#stage-prod")).to_contain_text("WaitingForApproval")
    expect(page.locator("#stage-prod")).to_contain_text(v2)
    going = page.locator("#stage-prod .diff")
    expect(going).to_contain_text("registry.local/shop:v1")
    expect(going).to_contain_text("registry.local/shop:v2")
    expect(going.locator("tr.changed").filter(has_text="greeting: hi")).to_have_count(1)
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.get_by_role("button", name="Reject")).to_have_count(0)
    page.screenshot(path=str(screenshots / "console-pipeline-viewer.png"), full_page=True)
    # The page redraws itself; while nothing changes, the server says so (204) and sends nothing.
    version = page.locator("#pipeline-version").get_attribute("value")
    unchanged = page.request.get(f"{viewer_console.url}{pipeline_path}/live?v={version}")
    assert unchanged.status == 204, unchanged.status
    token = page.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    forged = page.request.post(f"{viewer_console.url}{pipeline_path}/stages/prod/approve",
                               headers={"X-CSRF-Token": token}, form={"artifact": v2})
    assert forged.status == 403, (forged.status, forged.text())
    assert "not allowed to approve releases to stage prod" in forged.text() and "forbidden" in forged.text()
    assert stages.cluster.get_json("releaseapprovals", "-n", stages.prod)["items"] == []
    viewer_context.close()

    # The approver rejects v2: recorded with their name, nothing waits, prod stays on v1.
    approver_console, approver = consoles["approver"]
    approver_context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = approver_context.new_page()
    page.set_default_timeout(15_000)
    asked = accept_dialogs(page)
    page.goto(approver_console.url + pipeline_path)
    navigations = count_navigations(page)
    page.locator("#stage-prod").get_by_role("button", name="Reject").click()
    expect(page.locator("#result .message.ok")).to_contain_text("Reject")
    assert asked[-1].startswith("Reject artifact") and v2 in asked[-1], asked
    expect(page.locator("#history")).to_contain_text("Rejected", timeout=ROLLOUT_TIMEOUT)
    expect(page.locator("#history")).to_contain_text(approver)
    expect(page.locator("#stage-prod").get_by_role("button", name="Approve")).to_have_count(0)
    assert stages.shop(stages.prod)["spec"]["image"] == "registry.local/shop:v1"

    # v3 arrives and waits (the page follows without a reload); the approver approves it.
    v3 = _waiting_for_prod(stages, "registry.local/shop:v3", "hey")
    expect(page.locator("#stage-prod")).to_contain_text(v3, timeout=ROLLOUT_TIMEOUT)
    expect(page.locator("#stage-prod .diff")).to_contain_text("registry.local/shop:v3")
    assert navigations == [], f"the page reloaded: {navigations}"
    page.screenshot(path=str(screenshots / "console-pipeline-approver.png"), full_page=True)
    page.locator("#stage-prod").get_by_role("button", name="Approve").click()
    expect(page.locator("#result .message.ok")).to_contain_text("Approve")
    approvals = [a for a in stages.cluster.get_json("releaseapprovals", "-n", stages.prod)["items"]
                 if a["spec"]["decision"] == "Approve"]
    assert [(a["spec"]["approver"], a["spec"]["artifact"]) for a in approvals] == [(approver, v3)]
    stages.wait_status(lambda s: stages.stage(s, "prod").get("lastPromoted") == v3, "prod promoted")
    expect(page.locator("#history")).to_contain_text("Promoted", timeout=ROLLOUT_TIMEOUT)
    prod = stages.healthy(stages.prod, None, timeout=120)
    assert prod["spec"]["image"] == "registry.local/shop:v3" and prod["spec"]["replicas"] == 2
    expect(page.locator("#stage-prod")).to_contain_text("registry.local/shop:v3", timeout=ROLLOUT_TIMEOUT)
    approver_context.close()
