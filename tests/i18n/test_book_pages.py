"""Every paragraph of the book pages listed in locale/translated.yaml has a current Korean
translation: Sphinx's gettext builder extracts the English pages (as `sphinx-intl` does), and every
message of a listed page must be translated, non-fuzzy, in locale/ko/LC_MESSAGES/<page>.po. An
edited English paragraph is a new message, so it fails here until it is translated again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import course_i18n as i18n

REPO = Path(__file__).resolve().parents[2]
BOOK = REPO / "book"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> Path:
    sys.path.insert(0, str(BOOK))
    import build  # book/build.py: the offline assets conf.py needs

    build.install_assets()
    out = tmp_path_factory.mktemp("gettext")
    env = dict(os.environ, CLOUDMART_BOOK_EXECUTION="off", CLOUDMART_BOOK_LANG="en")
    result = subprocess.run([sys.executable, "-m", "sphinx", "-q", "-b", "gettext", "-c", str(BOOK), str(BOOK), str(out)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=800)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def untranslated(pot: Path, po: Path) -> list[str]:
    catalogue = i18n.read_catalogue(po)
    missing = []
    for message in i18n.read_catalogue(pot):
        if not message.id:
            continue
        found = catalogue.get(message.id, context=message.context)
        if found is None or not found.string or found.fuzzy:
            missing.append(message.id)
    return missing


@pytest.mark.parametrize("page", i18n.translated_sources()["pages"])
def test_every_paragraph_of_a_listed_page_is_translated(templates, page):
    pot = templates / f"{page}.pot"
    assert pot.is_file(), f"no such page: {page}"
    missing = untranslated(pot, i18n.LOCALE_DIR / "ko" / "LC_MESSAGES" / f"{page}.po")
    assert missing == [], f"{page}: untranslated or stale: {missing[:5]} (sphinx-intl update, then translate)"


def test_an_edited_paragraph_counts_as_untranslated(templates, tmp_path):
    pot = (templates / "index.pot").read_text(encoding="utf-8")
    edited = tmp_path / "index.pot"
    edited.write_text(pot.replace('msgid "Every lesson follows one loop:"', 'msgid "Every lesson follows this loop:"'),
                      encoding="utf-8")
    assert untranslated(edited, i18n.LOCALE_DIR / "ko" / "LC_MESSAGES" / "index.po") == ["Every lesson follows this loop:"]
