"""The demo shop in headless Chromium (Debian's, driven by Playwright): buy, pay on the sandbox
cashier, follow the redirect, watch the result page reach the order's final state."""
import os
import pathlib
import re
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = pathlib.Path(__file__).resolve().parents[2] / "test-artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is not installed: make test installs it with apt-get")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request):
    mobile = "wap" in request.node.name
    context = browser.new_context(viewport={"width": 390, "height": 844} if mobile else {"width": 1280, "height": 800},
                                  is_mobile=mobile)
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def buy(page, stack, channel):
    page.goto(stack.shop_url + "/")
    page.check("#item-tea")
    page.check(f"#channel-{channel}")
    page.click("#buy")
    page.wait_for_selector("#pay")  # the auto-submitting form took us to the cashier
    assert "Alipay sandbox" in page.title()
    return page.inner_text("#out_trade_no")


@pytest.mark.parametrize("channel", ["page", "wap"])
def test_buy_and_pay_reaches_trade_success(page, stack, api, channel):
    no = buy(page, stack, channel)
    assert ("H5" if channel == "wap" else "PC") in page.inner_text("h1")
    assert page.inner_text("#amount") == "¥88.80"
    page.click("#pay")
    page.wait_for_url(re.compile(re.escape(stack.shop_url) + r"/result\?out_trade_no="))
    page.wait_for_selector("#status[data-final=yes]")
    assert page.inner_text("#status") == "TRADE_SUCCESS"
    assert page.inner_text("#out_trade_no") == no
    order = api.order(no)
    assert order["status"] == "TRADE_SUCCESS" and order["product"] == channel
    assert [e["source"] for e in api.events(no)] == ["api", "notify"]


def test_cancel_on_the_cashier_leaves_the_order_waiting_wap(page, stack, api):
    no = buy(page, stack, "wap")
    page.click("#cancel")
    page.wait_for_selector("#cancelled")
    page.click("#back")  # H5 cashier sends the buyer back to quit_url: the shop
    page.wait_for_selector("#buy")
    assert api.order(no)["status"] == "WAIT_BUYER_PAY"
    assert api.sandbox_notifications(no) == []
