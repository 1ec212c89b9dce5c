"""One real browser (Debian's chromium driven by Playwright) against the real server."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
TOKEN = "browser-test-token"

if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)


@pytest.fixture
def server(indexed, offline):  # noqa: ANN001, ANN201
    """The real threaded server on a free port, with a token so the cookie flow is exercised."""
    from search.engine import Engine
    from webui.serve import build_server

    engine = Engine(indexed, encoder=offline)
    srv = build_server(indexed, host="127.0.0.1", port=0, token=TOKEN, engine=engine)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.port}"
    srv.shutdown()
    srv.server_close()
    engine.close()


def test_search_in_a_real_browser(server, library, tmp_path):  # noqa: ANN001
    # WEBUI_SCREENSHOT_DIR keeps the screenshot for a person to look at.
    screenshots = Path(os.environ.get("WEBUI_SCREENSHOT_DIR", tmp_path))
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            page.goto(f"{server}/?token={TOKEN}")
            assert "token" not in page.url  # the script takes the token out of the address bar
            box = page.locator("input[name=q]")
            assert box.evaluate("el => el === document.activeElement")  # autofocus
            box.type("a cat")
            box.press("Enter")
            page.wait_for_selector("#results .result")

            first = page.locator("#results .result").first
            assert Path(first.get_attribute("data-path")).name == "chelsea_cat.png"
            assert page.locator("#results .result").count() == 12
            # Thumbnails really load, so the cookie from ?token= reached the image requests.
            # (Polled from here: wait_for_function needs eval, which the page's CSP forbids.)
            images = page.locator("#results img")
            for _ in range(100):
                if all(images.evaluate_all("imgs => imgs.map(i => i.complete && i.naturalWidth)")):
                    break
                page.wait_for_timeout(100)
            assert all(images.evaluate_all("imgs => imgs.map(i => i.naturalWidth > 0)"))
            assert first.locator("img").evaluate("i => i.naturalWidth") == 320
            first.hover()  # the score shows on hover
            page.wait_for_timeout(300)  # the caption's fade-in
            assert first.locator(".caption").evaluate("c => getComputedStyle(c).opacity") == "1"
            assert first.locator(".score").text_content().startswith("0.")
            page.screenshot(path=str(screenshots / "pixseek-search.png"))

            # A click opens the full photo in a new tab, fetched by id (cookie, media CSP).
            with page.context.expect_page() as opened:
                first.locator("a").click()
            photo = opened.value
            photo.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            photo.wait_for_load_state()
            assert photo.url == f"{server}/image/{first.get_attribute('data-id')}"
            assert photo.locator("img").evaluate("i => [i.naturalWidth, i.naturalHeight]") \
                == [451, 300]
            photo.close()

            # An empty query says why instead of searching.
            box.fill("   ")
            box.press("Enter")
            assert page.locator("#message").is_visible()
            assert "query is empty" in page.locator("#message").text_content()

            # Search by example: choosing a file submits it.
            with page.expect_navigation():
                page.set_input_files("input[name=image]", str(library / "espresso_cup.png"))
            assert Path(page.locator("#results .result").first.get_attribute("data-path")).name \
                == "espresso_cup.png"
            assert errors == []
        finally:
            browser.close()
