"""``api.language.resolve_language``, the one rule for the language of a request: bk_language over the
blueking_language cookie over Accept-Language over Chinese; a value naming neither language is as if absent."""

from __future__ import annotations

import pytest

from nodeops.api.language import resolve_language
from nodeops.domain.i18n import Language

EN, ZH = Language.EN, Language.ZH


@pytest.mark.parametrize(
    ("bk_language", "cookie", "accept", "expected"),
    [
        (None, None, None, ZH),
        ("en", None, None, EN),
        ("zh-hans", "blueking_language=en", "en", ZH),
        ("en", "blueking_language=zh-cn", "zh-CN", EN),
        (None, "blueking_language=en", "zh-CN", EN),
        (None, "blueking_language=zh-cn", "en", ZH),
        (None, "other=1; blueking_language=en-US", None, EN),
        (None, 'blueking_language="en"', None, EN),  # a quoted cookie value
        (None, "xblueking_language=en", None, ZH),  # another cookie's name
        (None, None, "en-US,en;q=0.9", EN),
        (None, None, "zh-CN;q=0.4,en;q=0.6", EN),
        (None, None, "zh-CN,en;q=0.6", ZH),
        ("klingon", "blueking_language=en", None, EN),  # an unknown value: the next way decides
        ("klingon", "blueking_language=??", "en", EN),
        ("klingon", "blueking_language=??", "fr", ZH),
        ("", "", "", ZH),
        (["en"], None, None, ZH),  # a JSON body's list is no tag
        (1, None, None, ZH),
        ("en\x00", None, None, ZH),
    ],
)
def test_the_strongest_way_of_asking_decides(bk_language, cookie, accept, expected):
    assert resolve_language(bk_language, cookie, accept) is expected
