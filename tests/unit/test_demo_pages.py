"""The demo shop's pages: what the URL brings in never becomes markup or script (merchants copy
demo code)."""
import re

from demo import pages

HOSTILE = '</script><script>alert("x")</script><img src=x onerror=alert(1)>'


def test_an_order_number_from_the_url_cannot_end_the_script_or_add_markup():
    for page in (pages.result(HOSTILE), pages.cancelled(HOSTILE), pages.redirecting(HOSTILE, "")):
        assert "<img src=x" not in page and 'alert("x")</script>' not in page
        assert len(re.findall(r"<script>", page)) == page.count("</script>")  # every script closes where it should
    result = pages.result(HOSTILE)
    assert result.count("<script>") == 1 and "\\u003c/script>" in result
