"""The demo shop's HTML: one layout, product cards, the result and cancel pages. Bilingual, since
the buyers of an Alipay shop read Chinese first; the English is for the developer trying it."""
import html
import json
from urllib.parse import quote

# CJK faces first by platform (macOS, Windows, Linux/Android), then the generic family.
FONTS = ('-apple-system, "PingFang SC", "Hiragino Sans GB", "Microsoft YaHei", "Noto Sans CJK SC", '
         '"Source Han Sans SC", "WenQuanYi Micro Hei", "Helvetica Neue", Arial, sans-serif')

FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect width="64" height="64" rx="14" '
           'fill="#1677ff"/><path d="M20 40c6-14 18-20 26-18-4 10-14 20-26 18z" fill="#fff"/>'
           '<path d="M18 46c8-2 14-8 18-14" stroke="#fff" stroke-width="3" fill="none"/></svg>')

STYLE = """
*{box-sizing:border-box} body{margin:0;font-family:%s;color:#1f2329;background:#f5f6f8;line-height:1.5}
header{background:#fff;border-bottom:1px solid #e5e6eb} .bar{max-width:960px;margin:0 auto;padding:14px 20px;
display:flex;align-items:center;gap:10px} .bar img{width:28px;height:28px} .bar b{font-size:18px}
.bar small{color:#86909c} main{max-width:960px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:22px;margin:0 0 4px} .sub{color:#86909c;margin:0 0 20px}
.cards{display:grid;grid-template-columns:repeat(3,1fr);gap:16px;margin-bottom:24px}
.card{display:block;background:#fff;border:2px solid transparent;border-radius:12px;padding:16px;cursor:pointer;
box-shadow:0 1px 3px rgba(0,0,0,.06)} .card:has(input:checked){border-color:#1677ff}
.card input{position:absolute;opacity:0} .card svg{width:100%%;height:120px;border-radius:8px;background:#f2f7ff}
.name{font-weight:600;margin-top:10px} .en{color:#86909c;font-size:13px} .price{color:#ff4d4f;font-size:20px;
font-weight:600;margin-top:6px} .panel{background:#fff;border-radius:12px;padding:16px 20px;margin-bottom:20px}
.channels{display:flex;gap:24px;flex-wrap:wrap} .channels label{cursor:pointer}
.btn{display:inline-block;border:0;border-radius:8px;background:#1677ff;color:#fff;font-size:16px;padding:12px 28px;
cursor:pointer;text-decoration:none;font-family:inherit}
.btn.ghost{background:#fff;color:#1677ff;border:1px solid #1677ff}
.box{background:#fff;border-radius:12px;padding:28px;max-width:520px;margin:0 auto;text-align:center}
.icon{width:64px;height:64px;border-radius:50%%;margin:0 auto 12px;display:flex;align-items:center;
justify-content:center;font-size:34px;color:#fff;background:#c9cdd4} .icon.ok{background:#00b42a}
.icon.wait{background:#1677ff} .icon.no{background:#86909c}
dl{display:grid;grid-template-columns:auto 1fr;gap:8px 16px;text-align:left;margin:20px 0}
dt{color:#86909c} dd{margin:0;overflow-wrap:anywhere} .amount{color:#ff4d4f;font-weight:600}
.actions{display:flex;gap:12px;justify-content:center;flex-wrap:wrap} .note{color:#86909c;font-size:13px}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px}
@media (max-width:640px){.cards{grid-template-columns:1fr}.card{display:flex;gap:14px;align-items:center}
.card svg{width:96px;height:96px;flex:none}.btn{width:100%%;text-align:center}main{padding:16px 12px 40px}
.box{padding:20px}}
""" % FONTS

PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><link rel="icon" href="/favicon.svg" type="image/svg+xml"><style>{style}</style></head>
<body><header><div class="bar"><img src="/favicon.svg" alt=""><b>茶铺</b><small>Tea House · 演示商店 demo shop</small>
</div></header><main>{body}</main></body></html>"""

STATUS_WORDS = {
    "WAIT_BUYER_PAY": ("等待付款", "Waiting for your payment", "wait"),
    "TRADE_SUCCESS": ("支付成功", "Paid, thank you!", "ok"),
    "TRADE_FINISHED": ("交易完成", "Paid; the trade is finished", "ok"),
    "TRADE_CLOSED": ("交易已关闭", "Closed: not paid, or refunded in full", "no"),
}


def _script_json(value):
    """JSON safe inside <script>: a "</script>" in the query string must not end the script."""
    return json.dumps(value).replace("<", "\\u003c")


def page(title, body):
    return PAGE.format(title=html.escape(title), style=STYLE, body=body)


def index(items, mobile):
    cards = "".join(
        f'<label class="card" for="item-{key}"><input type="radio" name="item" value="{key}" id="item-{key}"'
        f'{" checked" if n == 0 else ""}>{item["art"]}<div><div class="name">{html.escape(item["zh"])}</div>'
        f'<div class="en">{html.escape(item["en"])}</div><div class="price">¥{item["price"]}</div></div></label>'
        for n, (key, item) in enumerate(items.items()))
    # Phones get Alipay's H5 cashier (it can open the Alipay app); computers the PC cashier with its QR code.
    page_checked, wap_checked = ("", " checked") if mobile else (" checked", "")
    body = (
        '<h1>今日好物 <span class="en">Today\'s picks</span></h1><p class="sub">选择商品，用支付宝付款。'
        'Pick an item and pay with Alipay (a local sandbox: no real money moves).</p>'
        f'<form method="post" action="/buy"><div class="cards">{cards}</div>'
        '<div class="panel"><div class="channels">'
        f'<label><input type="radio" name="channel" value="page" id="channel-page"{page_checked}> '
        '电脑网站支付 <span class="en">PC cashier</span></label>'
        f'<label><input type="radio" name="channel" value="wap" id="channel-wap"{wap_checked}> '
        '手机网站支付 <span class="en">H5 (phone)</span></label></div></div>'
        '<button id="buy" class="btn" type="submit">用支付宝付款 · Pay with Alipay</button></form>')
    return page("茶铺 Tea House", body)


def pos(items):
    """The point of sale: the cashier picks the item and scans (or types) the buyer's payment code."""
    options = "".join(f'<option value="{key}">{html.escape(item["zh"])} · {html.escape(item["en"])} '
                      f'¥{item["price"]}</option>' for key, item in items.items())
    body = ('<div class="box"><h1>收银台 <span class="en">Point of sale</span></h1>'
            '<p class="sub">扫描顾客的付款码。Scan the buyer\'s Alipay payment code (the sandbox\'s test codes: '
            '2800… paid, 2810005… confirming 5 s, 2840… balance too low).</p>'
            f'<form method="post" action="/pos/charge"><p><select name="item" id="item">{options}</select></p>'
            '<p><input name="auth_code" id="auth_code" inputmode="numeric" autocomplete="off" autofocus '
            'placeholder="付款码 Payment code" pattern="[0-9]{16,24}" required></p>'
            '<div class="actions"><button id="charge" class="btn" type="submit">收款 · Charge</button></div>'
            '</form></div>')
    return page("收银台 Point of sale", body)


def redirecting(out_trade_no, form):
    body = ('<div class="box"><div class="icon wait">⋯</div><h1>正在前往支付宝</h1><p class="sub">Taking you to Alipay… '
            f'订单 Order <code id="out_trade_no">{html.escape(out_trade_no)}</code></p>{form}'
            # The form submits itself; the button is for a browser that runs no script.
            '<div class="actions"><button class="btn" form="alipay_submit" type="submit">继续 · Continue</button>'
            '</div></div>')
    return page("正在前往支付宝 Redirecting to Alipay", body)


def failure(message, back="/"):
    body = ('<div class="box"><div class="icon no">!</div><h1>下单失败</h1><p class="sub">The order could not be '
            f'created.</p><p id="error" class="note">{html.escape(message)}</p>'
            f'<div class="actions"><a class="btn" id="back-to-shop" href="{html.escape(back)}">返回 · Back</a></div></div>')
    return page("下单失败 Order failed", body)


def declined(out_trade_no, reason):
    """A payment code Alipay declined: the order exists (closed), the till charges another code."""
    body = ('<div class="box"><div class="icon no">×</div><h1>支付未成功</h1><p class="sub">Alipay declined this '
            'payment code; ask the buyer for another.</p>'
            f'<dl><dt>订单号 Order</dt><dd><code id="out_trade_no">{html.escape(out_trade_no)}</code></dd></dl>'
            f'<p id="error" class="note">{html.escape(reason)}</p>'
            '<div class="actions"><a class="btn" id="back-to-pos" href="/pos">再收一次 · Charge again</a></div></div>')
    return page("支付未成功 Payment declined", body)


def result(out_trade_no):
    """Polls the shop's backend until the order is final; a failed poll is retried, never shown as a status."""
    words = json.dumps({code: [zh, en, tone] for code, (zh, en, tone) in STATUS_WORDS.items()}, ensure_ascii=False)
    body = f"""<div class="box"><div class="icon wait" id="icon">⋯</div><h1 id="headline">正在确认支付结果</h1>
<p class="sub" id="status">Checking with Alipay…</p>
<dl><dt>商品 Item</dt><dd id="subject">…</dd><dt>金额 Amount</dt><dd id="amount" class="amount">…</dd>
<dt>订单号 Order</dt><dd><code id="out_trade_no">{html.escape(out_trade_no)}</code></dd>
<dt>配送 Delivery</dt><dd id="fulfilment">—</dd></dl>
<p class="note" id="note">支付结果以支付宝通知为准，可能需要几秒钟。The status comes from Alipay's notification.</p>
<div class="actions"><a class="btn" id="back-to-shop" href="/">返回商店 · Back to the shop</a></div></div>
<script>
const no = {_script_json(out_trade_no)}, words = {words}, icons = {{ok: "✓", wait: "⋯", no: "×"}};
let tries = 0;
function show(order) {{
  const [zh, en, tone] = words[order.status] || ["状态未知", order.status, "wait"];
  document.getElementById("headline").textContent = zh;
  const status = document.getElementById("status");
  status.textContent = en;
  status.dataset.status = order.status;
  document.getElementById("icon").className = "icon " + tone;
  document.getElementById("icon").textContent = icons[tone];
  document.getElementById("subject").textContent = order.subject;
  document.getElementById("amount").textContent = "¥" + order.total_amount;
  return order.status !== "WAIT_BUYER_PAY";
}}
function finish(note) {{
  document.getElementById("status").dataset.final = "yes";
  document.getElementById("note").textContent = note;
}}
async function poll() {{
  tries += 1;
  try {{
    const r = await fetch("/api/orders/" + encodeURIComponent(no));
    if (r.status === 404) {{
      document.getElementById("headline").textContent = "找不到该订单";
      document.getElementById("status").textContent = "Order not found";
      document.getElementById("icon").className = "icon no";
      document.getElementById("icon").textContent = "?";
      document.getElementById("subject").textContent = document.getElementById("amount").textContent = "—";
      return finish("请从商店重新下单。Please order again from the shop.");
    }}
    if (r.ok) {{
      const order = await r.json();
      if (show(order)) {{
        finish("谢谢惠顾！Thank you.");
        if (order.status === "TRADE_SUCCESS" || order.status === "TRADE_FINISHED") return delivery(0);
        return;
      }}
    }}
  }} catch (error) {{ /* the shop was unreachable for a moment: ask again */ }}
  if (tries < 120) setTimeout(poll, Math.min(500 * tries, 3000));
  else document.getElementById("note").textContent =
      "仍在等待支付宝的通知，稍后刷新本页。Still waiting for Alipay: reload this page in a while.";
}}
async function delivery(asked) {{
  // The shop ships when the order.paid event reaches its queue (order events, EventBridge).
  try {{
    const f = await (await fetch("/fulfilment/" + encodeURIComponent(no))).json();
    document.getElementById("fulfilment").textContent = f.shipped ? "已发货 Shipped" : "备货中 Preparing";
    if (f.shipped) return;
  }} catch (error) {{ /* ask again */ }}
  if (asked < 60) setTimeout(() => delivery(asked + 1), 500);
}}
poll();
</script>"""
    return page("支付结果 Payment result", body)


def cancelled(out_trade_no):
    body = ('<div class="box"><div class="icon no">×</div><h1 id="cancelled">已取消支付</h1>'
            '<p class="sub">Payment cancelled. Nothing was charged; the order stays open until it expires.</p>'
            f'<dl><dt>订单号 Order</dt><dd><code id="out_trade_no">{html.escape(out_trade_no)}</code></dd></dl>'
            '<div class="actions"><a class="btn" id="back-to-shop" href="/">返回商店 · Back to the shop</a>'
            f'<a class="btn ghost" id="see-order" href="/result?out_trade_no={html.escape(quote(out_trade_no))}">'
            '查看订单 · See the order</a></div></div>')
    return page("已取消支付 Payment cancelled", body)
