"""Declarative smoke checks (runbook step 4): health, dry-run claim and redeem, the PWA flow.

Each check is retried a few times before it counts as failed, because a freshly restarted
release may take a moment to accept connections; the latency budget applies to every request.

``kind: http`` is one request. ``kind: pwa`` walks what a browser needs before it can install and
run the app, over plain HTTP: the page, the web app manifest it links (with the fields Chromium's
install criteria ask for), the service worker it registers, then the page's API calls.
``kind: browser`` runs the page in a real Chromium (``actions.browser``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from watchdog.clock import Clock
from watchdog.config import SmokeCheck

#: ``display`` values with which Chromium treats a manifest as installable.
INSTALLABLE_DISPLAYS = ("fullscreen", "standalone", "minimal-ui", "window-controls-overlay")
#: Chromium's smallest primary icon for installation (48 dp at 3x).
MIN_ICON_PX = 144
#: The HTML standard's JavaScript MIME type essences: a service worker served as anything else is refused.
JS_TYPES = frozenset(
    {
        "application/ecmascript",
        "application/javascript",
        "application/x-ecmascript",
        "application/x-javascript",
        "text/ecmascript",
        "text/javascript",
        "text/javascript1.0",
        "text/javascript1.1",
        "text/javascript1.2",
        "text/javascript1.3",
        "text/javascript1.4",
        "text/javascript1.5",
        "text/jscript",
        "text/livescript",
        "text/x-ecmascript",
        "text/x-javascript",
    }
)
# A JavaScript call, not HTML: the script text comes from the HTML parser or a fetched script.
_SW_REGISTER = re.compile(r"""navigator\s*\.\s*serviceWorker\s*\.\s*register\s*\(\s*(["'`])([^"'`]+)\1""")
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")
_ICON_SIZE = re.compile(r"(\d+)[xX](\d+)")


@dataclass(frozen=True)
class SmokeResult:
    """One check's outcome; ``evidence`` holds what a pwa or browser check saw on its last attempt."""

    name: str
    ok: bool
    attempts: int
    status: int | None
    latency_s: float | None
    problems: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "attempts": self.attempts,
            "status": self.status,
            "latency_s": self.latency_s,
            "problems": self.problems,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class Attempt:
    """What one try of a check found; ``retryable`` is False when trying again cannot help."""

    status: int | None
    latency_s: float | None
    problems: list[str]
    evidence: dict[str, Any] = field(default_factory=dict)
    retryable: bool = True


def run_with_retries(
    check: SmokeCheck, clock: Clock, retry_delay_s: float, attempt: Callable[[], Attempt]
) -> SmokeResult:
    """Try up to ``retries + 1`` times; the result reports the last attempt."""
    n = 0
    while True:
        n += 1
        last = attempt()
        if not last.problems:
            return SmokeResult(check.name, True, n, last.status, last.latency_s, evidence=last.evidence)
        if n > check.retries or not last.retryable:
            return SmokeResult(
                check.name, False, n, last.status, last.latency_s, last.problems, last.evidence
            )
        clock.sleep(retry_delay_s)


# --------------------------------------------------------------------------- http


def json_pointer(doc: Any, pointer: str) -> tuple[bool, Any]:
    """Resolve an RFC 6901 JSON Pointer; returns (found, value)."""
    if pointer == "":
        return True, doc
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(doc, dict) and token in doc:
            doc = doc[token]
        elif isinstance(doc, list) and _ARRAY_INDEX.fullmatch(token) and int(token) < len(doc):
            doc = doc[int(token)]
        else:
            return False, None
    return True, doc


def _json_problems(body: Any, expected: dict[str, Any]) -> list[str]:
    """Top-level keys and JSON Pointers; ``true`` is not ``1`` (Python alone would say it is)."""
    out: list[str] = []
    if not isinstance(body, dict) and any(not key.startswith("/") for key in expected):
        out.append("body is not a JSON object")
    for key, want in expected.items():
        if key.startswith("/"):
            found, got = json_pointer(body, key)
        elif isinstance(body, dict):
            found, got = key in body, body.get(key)
        else:
            continue
        if not found:
            out.append(f"json {key} is missing, expected {want!r}")
        elif got != want or isinstance(got, bool) != isinstance(want, bool):
            out.append(f"json {key}={got!r}, expected {want!r}")
    return out


def _body_problems(check: SmokeCheck, resp: httpx.Response) -> list[str]:
    out = []
    if check.expect_json:
        try:
            body = resp.json()
        except ValueError:
            out.append("body is not JSON")
        else:
            out.extend(_json_problems(body, check.expect_json))
    for text in check.expect_body_contains:
        if text not in resp.text:
            out.append(f"body lacks {text!r}")
    return out


def _problems(check: SmokeCheck, resp: httpx.Response, latency: float) -> list[str]:
    out = []
    if resp.status_code not in check.expect_status:
        out.append(f"status {resp.status_code}, expected {check.expect_status}")
    if latency > check.latency_budget_s:
        out.append(f"took {latency:.3f}s, budget {check.latency_budget_s}s")
    return out + _body_problems(check, resp)


def _join(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + path


def _http_attempt(client: httpx.Client, url: str, check: SmokeCheck, clock: Clock) -> Attempt:
    t0 = clock.now()
    try:
        resp = client.request(
            check.method,
            url,
            headers=check.request_headers(),
            json=check.json_body,
            timeout=check.latency_budget_s + 1.0,
        )
    except httpx.HTTPError as exc:
        return Attempt(None, None, [f"{type(exc).__name__}: {exc}"])
    latency = clock.now() - t0
    return Attempt(resp.status_code, latency, _problems(check, resp, latency))


# --------------------------------------------------------------------------- pwa


class _PageParser(HTMLParser):
    """Collects what the PWA walk needs from the page: base URL, manifest link, scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.base_href: str | None = None
        self.manifest_href: str | None = None
        self.script_srcs: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "base" and self.base_href is None and a.get("href"):
            self.base_href = a["href"]
        elif tag == "link" and "manifest" in a.get("rel", "").lower().split() and a.get("href"):
            self.manifest_href = self.manifest_href or a["href"]
        elif tag == "script":
            if a.get("src"):
                self.script_srcs.append(a["src"])
            else:
                self._in_inline_script = True
                self.inline_scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_inline_script = False

    def handle_data(self, data: str) -> None:
        if self._in_inline_script:
            self.inline_scripts[-1] += data


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _content_type(resp: httpx.Response) -> str:
    return str(resp.headers.get("content-type", "")).split(";")[0].strip().lower()


def _icon_px(icon: Any) -> int:
    """The side of a manifest icon usable as the app's primary icon, 0 if none (``sizes: any`` is big)."""
    if not isinstance(icon, dict) or not icon.get("src"):
        return 0
    if "any" not in str(icon.get("purpose", "any")).split():
        return 0
    sides = [0]
    for size in str(icon.get("sizes", "")).split():
        m = _ICON_SIZE.fullmatch(size)
        if m:
            sides.append(min(int(m.group(1)), int(m.group(2))))
        elif size == "any":
            sides.append(MIN_ICON_PX)
    return max(sides)


def _manifest_problems(manifest: Any, manifest_url: str, page_url: str) -> list[str]:
    """What keeps a browser from installing the app (Chromium's criteria, as on web.dev and MDN)."""
    if not isinstance(manifest, dict):
        return ["is not a JSON object"]
    out = []
    if not manifest.get("name") and not manifest.get("short_name"):
        out.append("has neither name nor short_name")
    start_url = manifest.get("start_url")
    if not isinstance(start_url, str) or not start_url:
        out.append("has no start_url")
    elif _origin(urljoin(manifest_url, start_url)) != _origin(page_url):
        out.append(f"start_url {start_url!r} is not on the page's origin")
    overrides = manifest.get("display_override")
    displays = [manifest.get("display", "browser"), *(overrides if isinstance(overrides, list) else [])]
    if not any(d in INSTALLABLE_DISPLAYS for d in displays):
        out.append(
            f"display is {manifest.get('display', 'browser')!r}; installing needs one of "
            + ", ".join(INSTALLABLE_DISPLAYS)
        )
    if manifest.get("prefer_related_applications") is True:
        out.append("prefer_related_applications is true: browsers offer the native app instead")
    icons = manifest.get("icons")
    if not isinstance(icons, list) or not icons:
        out.append("has no icons")
    elif max(_icon_px(i) for i in icons) < MIN_ICON_PX:
        out.append(f"has no icon of at least {MIN_ICON_PX}x{MIN_ICON_PX} px with purpose 'any'")
    return out


class _PwaWalk:
    """One attempt at the PWA's core flow; every request is a step of the evidence."""

    def __init__(
        self, client: httpx.Client, check: SmokeCheck, clock: Clock, origin: tuple[str, str]
    ) -> None:
        self.client = client
        self.check = check
        self.clock = clock
        #: The service's own origin: the check's headers (credentials, often) go there and nowhere
        #: else — a page may name a manifest or an icon on any host (docs/security.md).
        self.origin = origin
        self.steps: list[dict[str, Any]] = []

    def get(
        self,
        step: str,
        url: str,
        judge: Callable[[httpx.Response], list[str]],
        expect_status: tuple[int, ...] = (200,),
    ) -> httpx.Response | None:
        """GET ``url`` as ``step``; the response if its status was expected (``judge`` looks inside)."""
        record: dict[str, Any] = {"step": step, "url": url, "status": None, "latency_s": None, "problems": []}
        self.steps.append(record)
        t0 = self.clock.now()
        try:
            headers = self.check.request_headers() if _origin(url) == self.origin else {}
            resp = self.client.get(url, headers=headers, timeout=self.check.latency_budget_s + 1.0)
        except httpx.HTTPError as exc:
            record["problems"].append(f"{type(exc).__name__}: {exc}")
            return None
        latency = self.clock.now() - t0
        record.update(status=resp.status_code, latency_s=latency)
        if latency > self.check.latency_budget_s:
            record["problems"].append(f"took {latency:.3f}s, budget {self.check.latency_budget_s}s")
        if resp.status_code not in expect_status:
            record["problems"].append(f"status {resp.status_code}, expected {list(expect_status)}")
            return None
        record["problems"].extend(judge(resp))
        return resp

    def add(self, step: str, url: str | None, problem: str) -> None:
        """A step that fails without a request of its own (no manifest link, a cross-origin worker)."""
        self.steps.append(
            {"step": step, "url": url, "status": None, "latency_s": None, "problems": [problem]}
        )

    def manifest(self, manifest_url: str, page_url: str) -> None:
        """The manifest and, when it names one, its best icon (the one a browser would install)."""
        parsed: list[Any] = []

        def judge(resp: httpx.Response) -> list[str]:
            try:
                parsed.append(resp.json())
            except ValueError:
                return ["is not JSON"]
            return _manifest_problems(parsed[0], manifest_url, page_url)

        if self.get("manifest", manifest_url, judge) is None or not parsed or not isinstance(parsed[0], dict):
            return
        icons = parsed[0].get("icons")
        best = max(icons, key=_icon_px) if isinstance(icons, list) and icons else None
        if best is not None and _icon_px(best) >= MIN_ICON_PX:
            self.get("icon", urljoin(manifest_url, str(best["src"])), _judge_icon)

    def find_service_worker(self, page: _PageParser, base: str, page_url: str) -> str | None:
        """The URL in the first ``navigator.serviceWorker.register("…")`` of the page's scripts.

        Inline scripts first, then same-origin external ones (each fetched is a ``script`` step).
        """
        for text in self._scripts(page, base, page_url):
            m = _SW_REGISTER.search(text)
            if m:
                return urljoin(base, str(m.group(2)))
        return None

    def _scripts(self, page: _PageParser, base: str, page_url: str) -> Iterator[str]:
        yield from page.inline_scripts
        for src in page.script_srcs:
            url = urljoin(base, src)
            if _origin(url) == _origin(page_url):
                resp = self.get("script", url, _judge_script)
                if resp is not None:
                    yield resp.text

    def service_worker(self, sw_url: str, page_url: str) -> None:
        if _origin(sw_url) != _origin(page_url):
            self.add("service_worker", sw_url, "is not on the page's origin (browsers refuse to register it)")
            return

        def judge(resp: httpx.Response) -> list[str]:
            out = _judge_script(resp)
            max_scope = urlsplit(urljoin(sw_url, resp.headers.get("service-worker-allowed", "./"))).path
            page_path = urlsplit(page_url).path
            if not page_path.startswith(max_scope):
                out.append(
                    f"its scope {max_scope} cannot control the page {page_path} "
                    "(serve it higher up or send Service-Worker-Allowed)"
                )
            return out

        self.get("service_worker", sw_url, judge)

    def api_call(self, base_url: str, call: SmokeCheck) -> None:
        url = _join(base_url, call.path)
        done = _http_attempt(self.client, url, call, self.clock)
        self.steps.append(
            {
                "step": f"api {call.name}",
                "method": call.method,
                "url": url,
                "status": done.status,
                "latency_s": done.latency_s,
                "problems": done.problems,
            }
        )


def _judge_script(resp: httpx.Response) -> list[str]:
    kind = _content_type(resp)
    return [] if kind in JS_TYPES else [f"content type {kind or 'missing'!r} is not JavaScript"]


def _judge_icon(resp: httpx.Response) -> list[str]:
    kind = _content_type(resp)
    return [] if kind.startswith("image/") else [f"content type {kind or 'missing'!r} is not an image"]


def _pwa_attempt(client: httpx.Client, base_url: str, check: SmokeCheck, clock: Clock) -> Attempt:
    """Page → manifest (→ icon) → service worker → API calls; continues past problems where it can.

    The page is fetched with GET and the check's headers (as are the manifest, icon and scripts);
    ``latency_s`` of the result is the whole walk, the budget applies to each request.
    """
    t0 = clock.now()
    page_url = _join(base_url, check.path)
    walk = _PwaWalk(client, check, clock, _origin(page_url))
    parser = _PageParser()

    def judge_page(resp: httpx.Response) -> list[str]:
        parser.feed(resp.text)
        parser.close()
        return _body_problems(check, resp)

    page = walk.get("page", page_url, judge_page, tuple(check.expect_status))
    if page is not None:
        base = urljoin(page_url, parser.base_href or "")
        if parser.manifest_href is None:
            walk.add("manifest", None, 'the page has no <link rel="manifest" href="…">')
        else:
            walk.manifest(urljoin(base, parser.manifest_href), page_url)
        sw_url = walk.find_service_worker(parser, base, page_url)
        if sw_url is None:
            walk.add(
                "service_worker",
                None,
                'the page registers none (no navigator.serviceWorker.register("…") in its scripts)',
            )
        else:
            walk.service_worker(sw_url, page_url)
        for call in check.api_calls:
            walk.api_call(base_url, call)
    problems = [f"{s['step']}: {p}" for s in walk.steps for p in s["problems"]]
    status = walk.steps[0]["status"]
    return Attempt(status, clock.now() - t0, problems, {"steps": walk.steps})


# --------------------------------------------------------------------------- running


def run_check(
    client: httpx.Client, base_url: str, check: SmokeCheck, clock: Clock, retry_delay_s: float = 1.0
) -> SmokeResult:
    """Run one check of any kind, with its retries."""
    if check.kind == "browser":
        # actions.browser builds on this module, so it is imported here; it imports Playwright lazily.
        from actions.browser import browser_attempt

        return run_with_retries(check, clock, retry_delay_s, lambda: browser_attempt(base_url, check, clock))
    if check.kind == "pwa":
        return run_with_retries(
            check, clock, retry_delay_s, lambda: _pwa_attempt(client, base_url, check, clock)
        )
    url = _join(base_url, check.path)
    return run_with_retries(check, clock, retry_delay_s, lambda: _http_attempt(client, url, check, clock))


def run_checks(
    client: httpx.Client, base_url: str, checks: list[SmokeCheck], clock: Clock, retry_delay_s: float = 1.0
) -> list[SmokeResult]:
    """Run every check (not stopping at the first failure: the evidence should be complete)."""
    return [run_check(client, base_url, c, clock, retry_delay_s) for c in checks]
