"""A real browser (Debian's chromium driven by Playwright) against the real server: a whole
session with the mouse, one with the keyboard only, a phone, and axe-core's accessibility
checks in light and dark mode."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # drives a browser (Playwright, chromium)

CHROMIUM = "/usr/bin/chromium"
TOKEN = "browser-test-token"
ROOT = Path(__file__).resolve().parents[2]
# `make setup` installs axe-core here (npm, git-ignored).
AXE_PREFIX = ROOT / ".cache" / "npm"
AXE = AXE_PREFIX / "node_modules" / "axe-core" / "axe.min.js"

if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
expect = sync_api.expect


def serve(config, engine):
    from webui.serve import build_server

    srv = build_server(config, host="127.0.0.1", port=0, token=TOKEN, engine=engine)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture
def server(indexed, offline):
    """The real threaded server on a free port, with a token so the cookie flow is exercised."""
    from search.engine import Engine

    engine = Engine(indexed, encoder=offline)
    srv = serve(indexed, engine)
    yield f"http://127.0.0.1:{srv.port}"
    srv.shutdown()
    srv.server_close()
    engine.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        yield browser
        browser.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    """WEBUI_SCREENSHOT_DIR keeps the screenshots for a person to look at."""
    return Path(os.environ.get("WEBUI_SCREENSHOT_DIR", tmp_path))


def open_page(browser, server: str, path: str = "/", **context):
    """A page in a fresh context, signed in with ?token=, collecting console errors."""
    context.setdefault("viewport", {"width": 1280, "height": 800})
    page = browser.new_context(**context).new_page()
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(f"{server}{path}{'&' if '?' in path else '?'}token={TOKEN}")
    if context.get("java_script_enabled", True):
        assert "token" not in page.url  # the script takes the token out of the address bar
    return page


def images_loaded(page, selector: str = "#results img") -> list[int]:
    """Natural widths once every image has loaded (polled from here: wait_for_function
    needs eval, which the page's CSP forbids)."""
    images = page.locator(selector)
    for _ in range(100):
        if all(images.evaluate_all("imgs => imgs.map(i => i.complete && i.naturalWidth)")):
            break
        page.wait_for_timeout(100)
    return images.evaluate_all("imgs => imgs.map(i => i.naturalWidth)")


def photo_param(page) -> str | None:
    found = re.search(r"[?&]photo=(\d+)", page.url)
    return found.group(1) if found else None


def tile_ids(page) -> list[str]:
    return page.locator("#results .result").evaluate_all("ts => ts.map(t => t.dataset.id)")


def test_a_session_with_the_mouse(browser, server, library, shots):
    page = open_page(browser, server)
    box = page.locator(".search input[name=q]")
    assert box.evaluate("el => el === document.activeElement")  # autofocus
    box.type("a cat")
    box.press("Enter")
    page.wait_for_selector("#results .result")
    tiles = page.locator("#results .result")
    first = tiles.first
    assert Path(first.get_attribute("data-path")).name == "chelsea_cat.png"
    assert tiles.count() == 12
    # Thumbnails really load, so the cookie from ?token= reached the image requests.
    assert all(w > 0 for w in images_loaded(page)) and first.locator("img").evaluate(
        "i => i.naturalWidth") == 320
    # Justified rows: every tile of a row keeps its photo's shape (to a pixel or two).
    for tile in tiles.all()[:4]:
        w, h, nat = tile.locator("img").evaluate(
            "i => [i.clientWidth, i.clientHeight, i.naturalWidth / i.naturalHeight]")
        assert abs(w / h - nat) < 0.05 * nat
    assert page.locator("#weaker").is_visible()  # strong matches, then the weaker ones
    first.hover()  # name and score show on hover
    page.wait_for_timeout(300)  # the caption's fade-in
    assert first.locator(".caption").evaluate("c => getComputedStyle(c).opacity") == "1"
    assert re.fullmatch(r"score -?\d\.\d{3}", first.locator(".score").text_content().strip())
    page.screenshot(path=str(shots / "results-desktop-light.png"))

    # The detail view: a dialog with its own URL, fetched from the API.
    ids = tile_ids(page)
    first.locator("a.open").click()
    dialog = page.locator("#detail")
    expect(dialog).to_be_visible()
    assert photo_param(page) == ids[0] and dialog.evaluate("d => d.matches(':modal')")
    expect(page.locator("#detail-name")).to_have_text("chelsea_cat.png")
    assert page.locator("#detail-paths").text_content() == str(library / "chelsea_cat.png")
    expect(page.locator("#detail-date")).to_contain_text("(file time)")
    expect(page.locator("#detail-dims")).to_have_text("451 × 300 pixels")
    assert images_loaded(page, "#detail-img")[0] > 0
    page.keyboard.press("ArrowRight")
    expect(page.locator("#detail-name")).not_to_have_text("chelsea_cat.png")
    assert photo_param(page) == ids[1]
    # A swipe to the right goes back (pointer events; a mouse drag stands in for a finger).
    box_ = page.locator("#detail-img").bounding_box()
    y = box_["y"] + box_["height"] / 2
    page.mouse.move(box_["x"] + 100, y)
    page.mouse.down()
    page.mouse.move(box_["x"] + 300, y, steps=5)
    page.mouse.up()
    expect(page.locator("#detail-name")).to_have_text("chelsea_cat.png")
    assert photo_param(page) == ids[0]
    page.screenshot(path=str(shots / "detail-desktop-light.png"))

    # Find similar: a plain URL that shows the photo it starts from.
    page.locator("#detail-similar").click()
    page.wait_for_url(f"**/?similar={ids[0]}")
    expect(page.locator("h1.summary")).to_contain_text("like chelsea_cat.png")
    assert images_loaded(page, "h1 img.source")[0] > 0
    assert ids[0] not in tile_ids(page)

    # Back: the detail view again, then Esc closes it and leaves the results' URL.
    page.go_back()
    expect(page.locator("#detail")).to_be_visible()
    assert photo_param(page) == ids[0]
    page.keyboard.press("Escape")
    expect(page.locator("#detail")).to_be_hidden()
    assert page.url == f"{server}/?q=a+cat"

    # Filter: every field in the URL; empty ones left out.
    page.locator(".filters summary").click()
    page.locator("input[name=after]").fill("2000-01-01")
    page.locator("select[name=sort]").select_option("newest")
    page.locator(".filters button").click()
    page.wait_for_url("**/?q=a+cat&after=2000-01-01&sort=newest")
    assert page.locator(".filters").get_attribute("open") is not None
    assert page.locator("#results .result").count() == 12

    # More appends the next page in place.
    page.goto(f"{server}/?q=a+cat&k=5")
    more = page.locator("#more")
    more.click()
    expect(page.locator("#results .result")).to_have_count(10)
    expect(page.locator("#shown")).to_have_text("10 photos")  # the heading counts them too
    more.click()
    expect(page.locator("#results .result")).to_have_count(12)
    expect(more).to_have_count(0)  # the last page: no More
    assert len(set(tile_ids(page))) == 12 and page.url == f"{server}/?q=a+cat&k=5"
    assert page.locator("#weaker").count() == 1

    # An empty query says why instead of searching.
    box.fill("   ")
    box.press("Enter")
    assert page.locator("#message").is_visible()
    assert "query is empty" in page.locator("#message").text_content()

    # Search by example: choosing a file submits it, and the page shows the image.
    with page.expect_navigation():
        page.set_input_files("input[name=image]", str(library / "espresso_cup.png"))
    assert re.search(r"\?example=[0-9a-f]{64}&name=espresso_cup\.png$", page.url)
    assert Path(page.locator("#results .result").first.get_attribute("data-path")).name \
        == "espresso_cup.png"
    assert images_loaded(page, "h1 img.source")[0] > 0
    assert page.errors == []


def test_keyboard_only(browser, server):
    page = open_page(browser, server, "/?q=a+cat")
    ids = tile_ids(page)
    for _ in range(12):  # from the search box, Tab along to the first photo
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.matches('.result a.open')"):
            break
    assert page.evaluate("document.activeElement.closest('.result').dataset.id") == ids[0]
    # The focused photo shows its name and score, with a visible focus ring.
    tile = page.locator(".result").first
    page.wait_for_timeout(300)
    assert tile.locator(".caption").evaluate("c => getComputedStyle(c).opacity") == "1"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"

    page.keyboard.press("Enter")
    expect(page.locator("#detail")).to_be_visible()
    assert page.evaluate("document.activeElement.id") == "detail-close"
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.wait_for_url(f"**photo={ids[2]}")
    page.keyboard.press("ArrowLeft")
    page.wait_for_url(f"**photo={ids[1]}")
    expect(page.locator("#detail-name")).to_have_text(
        Path(page.locator(".result").nth(1).get_attribute("data-path")).name)
    for _ in range(8):  # Tab stays inside the modal dialog (or the browser's own UI)
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement === document.body"
                             " || !!document.activeElement.closest('#detail')")
    page.keyboard.press("Escape")
    expect(page.locator("#detail")).to_be_hidden()
    assert photo_param(page) is None
    # Focus returns to the photo that was shown last.
    assert page.evaluate("document.activeElement.closest('.result').dataset.id") == ids[1]
    assert page.errors == []


def test_without_javascript(browser, server):
    """Every state is a server-rendered URL: the page works with scripts off."""
    page = open_page(browser, server, "/?q=a+cat&k=5", java_script_enabled=False)
    ids = tile_ids(page)
    for tile in page.locator(".result img").all():  # coarse shapes from CSS classes alone
        w, h, nat = tile.evaluate(
            "i => [i.clientWidth, i.clientHeight, i.naturalWidth / i.naturalHeight]")
        assert abs(w / h - nat) < 0.2 * nat
    page.locator(".result a.open").first.click()
    page.wait_for_url(f"**/?q=a+cat&k=5&photo={ids[0]}")
    expect(page.locator("#detail")).to_be_visible()
    expect(page.locator("#detail-copy")).to_be_hidden()  # the clipboard needs the script
    page.locator("#detail-next").click()
    page.wait_for_url(f"**/?q=a+cat&k=5&photo={ids[1]}")
    page.locator("#detail-close").click()
    page.wait_for_url("**/?q=a+cat&k=5")
    expect(page.locator("#detail")).to_be_hidden()
    page.locator("#more").click()
    page.wait_for_url("**/?q=a+cat&k=5&offset=5")
    assert not set(tile_ids(page)) & set(ids)
    page.locator(".result .actions a", has_text="Similar").first.click()
    page.wait_for_url("**/?similar=*")
    expect(page.locator("h1.summary img.source")).to_be_visible()


def no_horizontal_scroll(page) -> bool:
    return page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth")


# Every card's controls and texts: inside their card, apart from each other, none cut short
# (an ellipsis or a clipped word has a scrollWidth above its clientWidth), and no card over
# another. Whatever a card holds is checked: links, buttons and the caption's parts.
CARD_PROBLEMS = """() => {
  const problems = [], eps = 0.5;
  const label = (el) => (el.className || el.tagName) + " '" + el.textContent.trim() + "'";
  const overlap = (a, b) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > eps
    && Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > eps;
  const cards = Array.from(document.querySelectorAll("#results .result"));
  cards.forEach((card, n) => {
    const c = card.getBoundingClientRect();
    if (c.left < -eps || c.right > document.documentElement.clientWidth + eps)
      problems.push("card " + n + " is past the window's edge");
    cards.slice(n + 1).forEach((other, m) => {
      if (overlap(c, other.getBoundingClientRect()))
        problems.push(`cards ${n} and ${n + m + 1} overlap`);
    });
    const parts = Array.from(
      card.querySelectorAll("a:not(.open), button, .caption > *, .text-match"),
    ).filter((el) => el.getClientRects().length);
    parts.forEach((el, i) => {
      const r = el.getBoundingClientRect();
      if (r.left < c.left - eps || r.right > c.right + eps || r.top < c.top - eps
          || r.bottom > c.bottom + eps) problems.push(`card ${n}: ${label(el)} is outside it`);
      if (getComputedStyle(el).display !== "inline" && el.scrollWidth > el.clientWidth)
        problems.push(`card ${n}: ${label(el)} is clipped`);
      parts.slice(i + 1).forEach((other) => {
        if (!el.contains(other) && !other.contains(el)
            && overlap(r, other.getBoundingClientRect()))
          problems.push(`card ${n}: ${label(el)} overlaps ${label(other)}`);
      });
    });
  });
  return problems;
}"""


def test_phone(browser, server, shots):
    phone = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
             "device_scale_factor": 3}
    for scheme in ("light", "dark"):
        page = open_page(browser, server, "/?q=a+cat", color_scheme=scheme, **phone)
        assert page.evaluate("matchMedia('(hover: none)').matches")
        tiles = page.locator("#results .result")
        images_loaded(page)
        assert tiles.count() == 12 and page.evaluate(CARD_PROBLEMS) == []
        # No hover on a touch screen: every name, date, score and action is on show.
        for tile in tiles.all():
            for part in (".caption", ".actions"):
                assert tile.locator(part).evaluate("c => getComputedStyle(c).opacity") == "1"
            for part in (".name", ".date", ".score", ".actions a"):
                expect(tile.locator(part).first).to_be_visible()
        assert "-640.jpg" in tiles.first.locator("img").evaluate("i => i.currentSrc")  # 2x
        assert no_horizontal_scroll(page)
        page.screenshot(path=str(shots / f"results-phone-{scheme}.png"))
        tiles.first.locator("a.open").tap()
        expect(page.locator("#detail")).to_be_visible()
        images_loaded(page, "#detail-img")
        assert no_horizontal_scroll(page)
        page.screenshot(path=str(shots / f"detail-phone-{scheme}.png"))
        page.goto(f"{server}/status")
        assert no_horizontal_scroll(page)
        page.screenshot(path=str(shots / f"status-phone-{scheme}.png"))
        assert page.errors == []
        page.context.close()


def axe_path() -> Path:
    """axe-core from npm, installed by `make setup`; installed here if it is missing."""
    if not AXE.exists():
        if shutil.which("npm") is None:
            pytest.skip("axe-core is not installed and there is no npm to install it "
                        "(install Node.js, then `make setup`)")
        done = subprocess.run(["npm", "install", "--no-save", "--no-audit", "--no-fund",
                               "--prefix", str(AXE_PREFIX), "axe-core@4"],
                              capture_output=True, text=True)
        if done.returncode or not AXE.exists():
            pytest.fail(f"npm could not install axe-core into {AXE_PREFIX}:\n{done.stderr}")
    return AXE


def axe_violations(page) -> list[str]:
    page.add_script_tag(path=str(axe_path()))
    found = page.evaluate("axe.run().then(r => r.violations.map(v => "
                          "v.id + ': ' + v.help + ' at ' + v.nodes.map(n => n.target).join(' ')))")
    return found


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_accessibility(browser, server, shots, scheme):
    # bypass_csp: only so that axe's script can be injected into the page.
    page = open_page(browser, server, color_scheme=scheme, bypass_csp=True)
    assert axe_violations(page) == [], "home"
    page.goto(f"{server}/?q=a+cat")
    images_loaded(page)
    assert axe_violations(page) == [], "results"
    page.screenshot(path=str(shots / f"results-desktop-{scheme}.png"))
    page.locator("#results a.open").first.click()
    expect(page.locator("#detail")).to_be_visible()
    images_loaded(page, "#detail-img")
    assert axe_violations(page) == [], "detail"
    page.screenshot(path=str(shots / f"detail-desktop-{scheme}.png"))
    page.goto(f"{server}/?q=asdfghjkl+qwerty&after=2000-01-01")  # nothing strong, filters open
    assert axe_violations(page) == [], "weak results"
    page.goto(f"{server}/status")
    assert axe_violations(page) == [], "status"
    page.screenshot(path=str(shots / f"status-desktop-{scheme}.png"))
    assert page.errors == []


def test_first_search_loads_the_model(browser, indexed, capsys):
    """A server that has not loaded its model yet says so on the first search. The timings
    are printed for people (tests assert behaviour, never timing)."""
    from search.engine import Engine

    engine = Engine(indexed)  # the model loads on the first query, as in `pixseek serve`
    srv = serve(indexed, engine)
    try:
        page = open_page(browser, f"http://127.0.0.1:{srv.port}")
        times = []
        for query in ("a cat", "a cup of coffee", "a building"):
            page.locator(".search input[name=q]").fill(query)
            started = time.perf_counter()
            # What the page says while it waits, read as the form is sent.
            said = page.evaluate("document.querySelector('form.search').requestSubmit(), "
                                 "document.getElementById('progress').textContent")
            assert said.startswith("Loading the model…" if not times else "Searching…")
            page.wait_for_url(f"**/?q={query.replace(' ', '+')}")
            page.wait_for_selector("#results .result")
            times.append(time.perf_counter() - started)
        assert page.locator("main").get_attribute("data-model-loaded") == "1"
        with capsys.disabled():
            print(f"\nfirst search (model cold) {times[0]:.2f} s; warm searches "
                  + ", ".join(f"{t * 1000:.0f} ms" for t in times[1:]))
        assert page.errors == []
    finally:
        srv.shutdown()
        srv.server_close()
        engine.close()
