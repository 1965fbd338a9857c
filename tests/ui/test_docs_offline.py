"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) work with no network: every file they load comes
from framecast itself (the ``fastapi-offline`` package's copies), never from a CDN.

The plain tests read the HTML through a TestClient. The browser tests open both pages in Debian's
Chromium with every request to another host aborted; they skip when Chromium or playwright is
missing here and fail instead when ``CI`` is set (as tests/ui/test_page.py does).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.routes.docs import assets_dir
from tests.ui.browser import chromium, require_browser, serve

PAGES = ("/docs", "/redoc")
REFERENCE = re.compile(r"""\b(?:src|href|spec-url)\s*=\s*["']([^"']+)["']""", re.I)
SWAGGER_SPEC_URL = re.compile(r"""\burl:\s*'([^']+)'""")
CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "json"}
KEY = "sekrit-docs-key-5e2b"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture(scope="module")
def empty_models(tmp_path_factory) -> Path:
    """No models: the docs need none (the routes are in the OpenAPI document regardless)."""
    return tmp_path_factory.mktemp("docs-no-models")


@pytest.fixture(scope="module")
def client(empty_models):
    # no lifespan (no `with`): nothing loads, and the docs must not need it
    return TestClient(create_app(Settings(models_dir=empty_models, load_mode="background")))


def _references(html: str) -> list[str]:
    return REFERENCE.findall(html) + SWAGGER_SPEC_URL.findall(html)


@pytest.mark.parametrize("path", PAGES)
def test_the_docs_pages_reference_only_same_origin_urls(client, path):
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    refs = _references(r.text)
    assert refs, "no src/href found: the page changed shape"
    external = [u for u in refs if re.match(r"(?i)^(?:[a-z][a-z0-9+.-]*:)?//", u)]
    assert not external, f"{path} loads from another origin: {external}"
    assert "/openapi.json" in refs
    assert any(u.endswith(".js") for u in refs)


@pytest.mark.parametrize("path", PAGES)
def test_every_asset_the_docs_reference_answers_with_its_type(client, path):
    for url in _references(client.get(path).text):
        r = client.get(url)
        assert r.status_code == 200, f"{path}: {url} answered {r.status_code}"
        suffix = Path(urlparse(url).path).suffix
        expected = CONTENT_TYPES.get(suffix, "")
        assert expected in r.headers["content-type"], (url, r.headers["content-type"])
        assert len(r.content) > 100


def test_the_assets_are_the_packaged_files(client):
    folder = assets_dir()
    assert folder.parent.name == "fastapi_offline"
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        r = client.get(f"/docs/assets/{name}")
        assert r.status_code == 200 and r.content == (folder / name).read_bytes()
    assert client.get("/docs/assets/nope.js").status_code == 404


def test_swagger_ui_keeps_its_oauth2_redirect(client):
    assert "'/docs/oauth2-redirect'" in client.get("/docs").text
    r = client.get("/docs/oauth2-redirect")
    assert r.status_code == 200 and "swaggerUIRedirectOauth2" in r.text


@pytest.mark.parametrize("path", PAGES)
def test_the_docs_pages_forbid_other_origins(client, path):
    csp = client.get(path).headers["content-security-policy"]
    assert "default-src 'self'" in csp and "img-src 'self' data:" in csp
    assert "http" not in csp and "*" not in csp


def test_the_openapi_document_is_unchanged(client):
    spec = client.get("/openapi.json").json()
    assert spec == client.app.openapi()
    assert spec["info"]["title"] == "framecast" and "/v1/models" in spec["paths"]
    assert not {p for p in spec["paths"] if p.startswith(("/docs", "/redoc"))}


def test_with_api_keys_the_docs_stay_open_and_v1_does_not(empty_models):
    app = create_app(Settings(models_dir=empty_models, load_mode="background", api_keys=KEY))
    c = TestClient(app)
    for page in PAGES:
        assert c.get(page).status_code == 200
        for url in _references(c.get(page).text):
            assert c.get(url).status_code == 200, url
    assert c.get("/docs/oauth2-redirect").status_code == 200
    assert c.get("/v1/models").status_code == 401
    assert c.get("/v2").status_code == 401
    assert c.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 403


# ------------------------------------------------------------------------- in a real browser


@pytest.fixture(scope="module")
def base_url(empty_models):
    require_browser()
    with serve(Settings(models_dir=empty_models, load_mode="background")) as url:
        yield url


@pytest.fixture(scope="module")
def browser(base_url):
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    d = os.environ.get("FRAMECAST_ARTIFACTS_DIR")
    path = Path(d) / "ui" if d else tmp_path_factory.mktemp("docs-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


class Offline:
    """A page whose requests to any host but this machine are aborted; records what was aborted,
    what failed, same-origin answers of 400 and over, and JavaScript errors."""

    def __init__(self, browser, base_url: str):
        self.origin = base_url
        self.context = browser.new_context(viewport={"width": 1200, "height": 900})
        self.blocked: list[str] = []
        self.failed: list[str] = []
        self.bad: list[str] = []
        self.errors: list[str] = []
        self.refused: list[str] = []  # what the docs' Content-Security-Policy kept from loading
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} {r.failure}"))
        self.page.on("response", self._response)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", self._console)

    def _route(self, route) -> None:
        url = route.request.url
        host = urlparse(url).hostname
        if url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("internetdisconnected")

    def _console(self, message) -> None:
        if "Content Security Policy" in message.text:
            self.refused.append(message.text)

    def _response(self, response) -> None:
        if response.url.startswith(self.origin) and response.status >= 400:
            self.bad.append(f"{response.status} {response.url}")

    def check(self) -> None:
        same_origin_failures = [f for f in self.failed if f.startswith(self.origin)]
        assert not same_origin_failures, f"same-origin requests failed: {same_origin_failures}"
        assert not self.bad, f"same-origin requests answered errors: {self.bad}"
        assert not self.blocked, f"the page reached for other hosts: {self.blocked}"
        assert not self.errors, f"JavaScript errors: {self.errors}"
        # the policy may refuse other origins' files (that is its job), never the page's own
        # inline code, workers or same-origin files
        own = [t for t in self.refused if not re.search(r"'https?://(?!127\.0\.0\.1)", t)]
        assert not own, f"the Content-Security-Policy broke the page: {own}"


@pytest.fixture
def offline(browser, base_url):
    o = Offline(browser, base_url)
    yield o
    o.context.close()


def _operations(spec: dict) -> list[tuple[str, str]]:
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return [(m, p) for p, ops in spec["paths"].items() for m in ops if m in methods]


def test_swagger_ui_renders_every_operation_offline(offline, base_url, artifacts):
    page = offline.page
    spec = page.request.get(base_url + "/openapi.json").json()
    page.goto(base_url + "/docs")
    page.wait_for_selector(".opblock", timeout=60_000)
    page.wait_for_selector(".opblock-summary-path:has-text('/v1/models')")
    assert page.title() == "framecast - Swagger UI"
    assert page.locator(".opblock").count() == len(_operations(spec))
    shown = set(
        page.eval_on_selector_all(
            ".opblock-summary-path", "els => els.map(e => e.getAttribute('data-path'))"
        )
    )
    assert shown == set(spec["paths"])
    assert "framecast" in page.inner_text(".information-container .title")
    page.screenshot(path=str(artifacts / "docs_swagger_offline.png"))
    # "Try it out" calls this server under the page's Content-Security-Policy
    op = page.locator("#operations-health-healthz_healthz_get")
    op.locator(".opblock-summary").click()
    op.locator("button.try-out__btn").click()
    op.locator("button.execute").click()
    status = op.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for(timeout=30_000)
    assert status.inner_text().strip() == "200"
    offline.check()


def test_redoc_renders_offline(offline, base_url, artifacts):
    page = offline.page
    spec = page.request.get(base_url + "/openapi.json").json()
    summary = spec["paths"]["/v1/models"]["get"]["summary"]
    page.goto(base_url + "/redoc")
    page.wait_for_selector("h1:has-text('framecast')", timeout=60_000)
    heading = page.locator("h2", has_text=summary).first
    heading.wait_for()
    assert page.title() == "framecast - ReDoc"
    # the operation's own path is in its panel
    assert "/v1/models" in page.inner_text("body")
    page.screenshot(path=str(artifacts / "docs_redoc_offline.png"))
    # search runs in a worker: it must work under the page's Content-Security-Policy
    found = spec["paths"]["/v1/compare/next-frame"]["post"]["summary"]
    page.fill("input[placeholder='Search...']", "compare")
    page.locator("[role=search]", has_text=found).wait_for(timeout=30_000)
    offline.check()


def test_a_page_that_needs_a_cdn_would_be_caught(offline, base_url):
    """The harness itself: a request for another host is aborted and recorded."""
    page = offline.page
    page.goto(urljoin(base_url, "/openapi.json"))
    page.evaluate("fetch('https://cdn.jsdelivr.net/npm/redoc@2').catch(() => null)")
    page.wait_for_timeout(200)
    assert offline.blocked == ["https://cdn.jsdelivr.net/npm/redoc@2"]
    offline.blocked.clear()
