"""Tags in a real browser: select results and "Tag as…", then answer the tag page with y."""

from __future__ import annotations

from tests.webui.test_browser import (  # noqa: F401
    axe_violations,
    browser,
    open_page,
    server,
    sync_api,
)

expect = sync_api.expect


def test_tag_as_then_confirm_with_one_key(browser, server):  # noqa: F811
    page = open_page(browser, server, "/?q=a+cat")
    page.locator("#tag-select").click()
    page.locator(".result .tag-select input").first.check()
    page.locator("#tag-as input[name=tag]").fill("pets")
    page.locator("#tag-as button[type=submit]").click()
    expect(page.locator("#tag-as-status")).to_contain_text("Tagged.")
    page.locator("#tag-as-status a").click()
    expect(page.locator("h1")).to_contain_text("pets")
    first = page.locator("#suggestions .tag-photo").first
    first.focus()
    page.keyboard.press("y")
    expect(page.locator("#tag-status")).to_contain_text("Confirmed.")
    expect(first).to_have_class("dup tag-photo keep")
    assert page.errors == []


def test_tag_pages_pass_axe(browser, server):  # noqa: F811
    page = open_page(browser, server, "/?q=a+cat", bypass_csp=True)
    page.locator("#tag-select").click()
    assert axe_violations(page) == [], "results, selecting"
    page.locator(".result .tag-select input").first.check()
    page.locator("#tag-as input[name=tag]").fill("pets")
    page.locator("#tag-as button[type=submit]").click()
    expect(page.locator("#tag-as-status")).to_contain_text("Tagged.")
    page.goto(f"{server}/tags/pets")
    assert axe_violations(page) == [], "tag page"
    assert page.errors == []
