"""The demo shop and the service's own result page in headless Chromium (Debian's, driven by
Playwright), at desktop and phone sizes: buy, pay on the sandbox cashier, follow the redirects,
read the result in words, cancel and come back. Every page these tests reach is saved as a
screenshot in test-artifacts/ (NAME-SIZE.png), and any console error fails the test."""
import json
import os
import pathlib
import re
import shutil
import threading

import pytest
import urllib3
from werkzeug.serving import make_server

from demo.shop import Shop
from devstack import Stack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = pathlib.Path(__file__).resolve().parents[2] / "test-artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.0 Mobile/15E148 Safari/604.1")
SIZES = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
              "device_scale_factor": 2, "user_agent": IPHONE},
}


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is not installed: make test installs it with apt-get")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


class Tab:
    """A page at one size that keeps every console error and saves screenshots by name."""

    def __init__(self, browser, size, **options):
        self.size = size
        # Errors on the sandbox's own pages (its cashier) belong to the sandbox's tests, not these.
        self.elsewhere = []
        self.context = browser.new_context(**SIZES[size], **options)
        self.page = self.context.new_page()
        self.page.set_default_timeout(15000)
        self.errors = []
        self.page.on("console", lambda message: message.type == "error" and self._error(message.text))
        self.page.on("pageerror", lambda error: self._error(str(error)))

    def _error(self, text):
        on_sandbox = "/cashier/" in self.page.url or "/gateway.do" in self.page.url
        (self.elsewhere if on_sandbox else self.errors).append(f"{self.page.url}: {text}")

    def shot(self, name):
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}-{self.size}.png"), full_page=True)


@pytest.fixture(params=list(SIZES))
def tab(browser, request):
    tab = Tab(browser, request.param)
    yield tab
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        tab.shot(f"failed-{request.node.originalname}")
    tab.context.close()
    assert tab.errors == []


def choose(tab, shop_url, item="tea", channel=None):
    page = tab.page
    page.goto(shop_url + "/")
    page.wait_for_load_state("networkidle")
    page.click(f"label[for=item-{item}]")
    assert page.is_checked(f"#item-{item}")
    if channel:
        page.check(f"#channel-{channel}")


def test_the_shop_offers_cards_and_picks_h5_on_phones(tab, stack):
    choose(tab, stack.shop_url, "cup")
    page = tab.page
    assert page.locator(".card").count() == 3
    assert "西湖龙井" in page.inner_text("body") and "Longjing" in page.inner_text("body")
    assert page.is_checked("#channel-wap" if tab.size == "phone" else "#channel-page")
    font = page.evaluate("getComputedStyle(document.body).fontFamily")
    assert "PingFang SC" in font and "Noto Sans CJK SC" in font
    if tab.size == "phone":  # one card per row, nothing wider than the screen
        boxes = [page.locator(".card").nth(n).bounding_box() for n in range(3)]
        assert len({round(box["x"]) for box in boxes}) == 1
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    tab.shot("shop")
    for site in (stack.shop_url, stack.sandbox_url):  # the shop's, and the sandbox cashier's
        icon = page.request.get(site + "/favicon.ico")
        assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")


def test_buy_pay_and_read_the_result_in_words(tab, stack, api):
    choose(tab, stack.shop_url, "tea")
    page = tab.page
    page.click("#buy")
    page.wait_for_selector("#pay")  # the auto-submitting form took us to the cashier
    no = page.inner_text("#out_trade_no")
    assert page.inner_text("#amount") == "¥88.80"
    page.click("#pay")
    page.wait_for_url(re.compile(re.escape(stack.shop_url) + r"/result\?out_trade_no="))
    page.wait_for_selector("#status[data-final=yes]")
    assert page.get_attribute("#status", "data-status") == "TRADE_SUCCESS"
    assert page.inner_text("#headline") == "支付成功" and page.inner_text("#status") == "Paid, thank you!"
    assert "Longjing" in page.inner_text("#subject") and page.inner_text("#amount") == "¥88.80"
    assert page.inner_text("#out_trade_no") == no
    # The order.paid event went stream -> EventBridge -> the shop's queue, and the shop shipped it.
    page.wait_for_selector("#fulfilment:has-text('Shipped')", timeout=20000)
    tab.shot("result")
    order = api.order(no)
    assert order["status"] == "TRADE_SUCCESS" and order["product"] == ("wap" if tab.size == "phone" else "page")
    page.click("#back-to-shop")
    page.wait_for_selector("#buy")


def test_the_point_of_sale_charges_a_scanned_code_and_watches_it_settle(tab, stack, api):
    """In-store barcode payments: paid at once, and a buyer confirming for 5 s (202, then the fast
    lane's polling finds it paid); a declined code says why. The sandbox's test codes choose."""
    page = tab.page
    for code in ("280000000000000001", "281000500000000002"):
        page.goto(stack.shop_url + "/pos")
        page.fill("#auth_code", code)
        page.click("#charge")
        page.wait_for_url(re.compile(re.escape(stack.shop_url) + r"/result\?out_trade_no=DEMOPOS"))
        page.wait_for_selector("#status[data-final=yes]", timeout=40000)
        assert page.get_attribute("#status", "data-status") == "TRADE_SUCCESS"
        no = page.inner_text("#out_trade_no")
        assert api.order(no)["product"] == "barcode"
    tab.shot("pos-result")
    page.goto(stack.shop_url + "/pos")
    tab.shot("pos")
    page.fill("#auth_code", "284000000000000003")
    page.click("#charge")
    page.wait_for_selector("#error")
    assert "ACQ.BUYER_BALANCE_NOT_ENOUGH" in page.inner_text("#error")
    declined = page.inner_text("#out_trade_no")  # the order exists, closed; the till goes back to charge again
    assert api.order(declined)["status"] == "TRADE_CLOSED"
    tab.shot("pos-declined")
    page.click("#back-to-pos")
    page.wait_for_selector("#auth_code")


def test_the_page_taking_the_buyer_to_alipay(browser, stack, request):
    # Without JavaScript the form does not submit itself, so the page can be seen and kept.
    for size in SIZES:
        tab = Tab(browser, size, java_script_enabled=False)
        choose(tab, stack.shop_url, "fan")
        tab.page.click("#buy")
        tab.page.wait_for_selector("#out_trade_no")
        assert "正在前往支付宝" in tab.page.inner_text("h1")
        assert tab.page.locator("form[action*='/gateway.do']").count() == 1
        tab.shot("redirecting")
        tab.context.close()
        assert tab.errors == []


def test_cancel_on_the_h5_cashier_comes_back_to_the_shops_cancel_page(tab, stack, api):
    choose(tab, stack.shop_url, "cup", channel="wap")
    page = tab.page
    page.click("#buy")
    page.wait_for_selector("#pay")
    no = page.inner_text("#out_trade_no")
    page.click("#cancel")
    page.click("#back")  # the H5 cashier sends the buyer to quit_url: the shop's cancel page
    page.wait_for_url(re.compile(re.escape(stack.shop_url) + r"/cancel\?out_trade_no="))
    assert page.inner_text("#cancelled") == "已取消支付" and page.inner_text("#out_trade_no") == no
    tab.shot("cancel")
    page.click("#see-order")
    page.wait_for_selector("#status[data-status=WAIT_BUYER_PAY]")
    page.go_back()
    page.click("#back-to-shop")
    page.wait_for_selector("#buy")
    assert api.order(no)["status"] == "WAIT_BUYER_PAY"
    assert api.sandbox_notifications(no) == []


def test_an_unknown_order_says_so_and_offers_the_way_back(tab, stack):
    tab.page.goto(stack.shop_url + "/result?out_trade_no=NOPE_NOT_OURS")
    tab.page.wait_for_selector("#status[data-final=yes]")
    assert tab.page.inner_text("#headline") == "找不到该订单"
    assert tab.page.is_visible("#back-to-shop")
    tab.errors.clear()  # the shop's own poll got its 404: that is the point of this page
    tab.shot("result-unknown")


@pytest.fixture(scope="module")
def refusing_shop(stack):
    """The shop with a token the API does not know: every order fails."""
    server = make_server("127.0.0.1", 0, Shop(stack.api_url, "not-a-valid-token"), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_failed_order_says_why_and_offers_the_way_back(tab, refusing_shop):
    choose(tab, refusing_shop, "tea")
    with tab.page.expect_response(lambda response: response.url.endswith("/buy")) as answer:
        tab.page.click("#buy")
    assert answer.value.status == 502
    tab.page.wait_for_selector("#error")
    assert "bearer token is not valid" in tab.page.inner_text("#error")
    tab.errors.clear()  # Chromium logs the 502 itself; the page is the answer to it
    tab.shot("order-failed")
    tab.page.click("#back-to-shop")
    tab.page.wait_for_selector("#buy")


@pytest.fixture(scope="module")
def plain_stack(tmp_path_factory):
    """A stack whose merchant set no RETURN_REDIRECT_URL: the service shows its own result page."""
    stack = Stack(tmp_path_factory.mktemp("plain"), time_factor=0.002, extra_env={"RETURN_REDIRECT_URL": ""},
                  table="alipay-orders-plain", secret_id="alipay/merchant-plain").start()
    yield stack
    stack.stop()


def test_the_services_own_result_page_after_paying(tab, plain_stack):
    http = urllib3.PoolManager()
    answer = http.request("POST", plain_stack.api_url + "/orders", headers={
        "Authorization": f"Bearer {plain_stack.token}", "Content-Type": "application/json"},
        body=json.dumps({"product": "wap" if tab.size == "phone" else "page", "subject": "青瓷茶杯 · Celadon tea cup",
                         "total_amount": "36.00", "quit_url": "https://shop.example/"}))
    order = json.loads(answer.data)
    page = tab.page
    page.goto(order["payment"]["url"])
    page.click("#pay")
    page.wait_for_url(re.compile(re.escape(plain_stack.api_url) + r"/alipay/return\?"))
    # The sandbox marked the trade paid before it sent the buyer back: the return's query finds it so.
    assert page.get_attribute("#status", "data-status") == "TRADE_SUCCESS"
    assert page.inner_text("#status") == "支付成功"
    result = page.inner_text("#result")
    assert "¥36.00" in result and "Celadon tea cup" in result and order["out_trade_no"] in result
    tab.shot("service-result")
