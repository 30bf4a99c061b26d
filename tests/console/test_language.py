"""Every text a console page shows exists in Chinese and in English."""

from __future__ import annotations

import re
from importlib.resources import files

from xbus.console.accounts import Role
from xbus.console.language import CHINESE, ENGLISH, translate
from xbus.console.request_pages import MASK_CHOICES
from xbus.console.sharing import Action, State
from xbus.core.catalog import CLASSIFICATIONS, SHARING_CLASSES

_TEXT = re.compile(r"""\bt\((?:"([^"]+)"|'([^']+)')\s*[,)]""")


def _template_texts() -> set[str]:
    found: set[str] = set()
    for template in files("xbus.console").joinpath("templates").iterdir():
        if template.name.endswith(".html"):
            found |= {
                m.group(1) or m.group(2)
                for m in _TEXT.finditer(template.read_text(encoding="utf-8"))
            }
    return found


def _kinds() -> set[str]:
    return (
        {f"state:{s.value}" for s in State}
        | {f"action:{a.value}" for a in Action}
        | {f"class:{c}" for c in CLASSIFICATIONS}
        | {f"sharing:{c}" for c in SHARING_CLASSES}
        | {f"sharing-explained:{c}" for c in SHARING_CLASSES}
        | {f"mask:{m}" for m in MASK_CHOICES}
        | {r.value for r in Role}
    )


def test_every_text_of_the_templates_has_a_chinese_translation() -> None:
    texts = _template_texts()
    assert len(texts) > 80
    missing = sorted(t for t in texts if t not in CHINESE)
    assert missing == []


def test_every_state_action_class_and_mask_reads_in_both_languages() -> None:
    kinds = _kinds()
    assert sorted(k for k in kinds if k not in CHINESE) == []
    assert sorted(k for k in kinds if ":" in k and k not in ENGLISH) == []


def test_english_pages_never_show_a_key() -> None:
    assert translate("en", "state:pending_owner") == "pending the owner"
    assert translate("en", "Catalogue") == "Catalogue"
    assert translate("zh-CN", "Catalogue") == "数据目录"
