"""The glossary (locale/glossary.yaml) maps each English term to one Korean term and back, and every
translated text that uses an English glossary term uses its Korean term."""

from __future__ import annotations

from pathlib import Path

import pytest

import course_i18n as i18n
from course_i18n import catalog

REPO = Path(__file__).resolve().parents[2]
LISTED = i18n.translated_sources()


def translated_pairs(language: str = "ko") -> list[tuple[str, str, str]]:
    """(where, English, translation) of every translated entry of every catalogue."""
    pairs = []
    for po in sorted((i18n.LOCALE_DIR / language / "LC_MESSAGES").rglob("*.po")):
        for message in i18n.read_catalogue(po):
            if message.id and message.string and not message.fuzzy:
                pairs.append((str(po.relative_to(i18n.LOCALE_DIR)), message.id, message.string))
    return pairs


def test_terms_map_one_to_one_in_both_directions():
    entries = i18n.glossary()
    english = [e["en"].lower() for e in entries]
    korean = [e["ko"] for e in entries]
    assert len(set(english)) == len(english), "an English term appears twice"
    assert len(set(korean)) == len(korean), "two English terms share a Korean term"
    back = {e["ko"]: e["en"] for e in entries}
    assert all(back[e["ko"]] == e["en"] for e in entries)


def test_the_curriculum_terms_are_in_the_glossary():
    ko = {e["en"]: e["ko"] for e in i18n.glossary()}
    assert ko["microservice"] == "마이크로서비스" and ko["circuit breaker"] == "서킷 브레이커"
    assert ko["canary"] == "카나리" and ko["zero trust"] == "제로 트러스트"
    assert ko["compliance automation"] == "컴플라이언스 자동화"


def test_every_book_glossary_term_has_an_entry():
    text = (REPO / "book" / "glossary.md").read_text(encoding="utf-8")
    block = text.split("```{glossary}", 1)[1].split("```", 1)[0]
    terms = [line.strip() for line in block.splitlines() if line.strip() and not line.startswith((" ", "\t"))]
    assert terms, "no term found in book/glossary.md"
    known = {e["en"] for e in i18n.glossary()}
    assert [t for t in terms if t not in known] == []


def test_every_translated_text_uses_the_korean_glossary_terms():
    pairs = translated_pairs()
    assert len(pairs) > 50
    wrong = [f"{where}: {english[:70]!r}: {violations}" for where, english, korean in pairs
             if (violations := i18n.glossary_violations(english, korean))]
    assert wrong == [], "\n".join(wrong)


@pytest.mark.parametrize("english, korean, expected", [
    ("Add a circuit breaker to the call.", "호출에 차단기를 추가하세요.", ["circuit breaker -> 서킷 브레이커"]),
    ("Two sidecars per pod.", "파드마다 사이드카 두 개.", []),
    ("Call `cm.canary(...)` here.", "여기서 `cm.canary(...)`를 호출하세요.", []),          # code is not prose
    ("A canary release.", "새 버전을 일부에만 배포.", ["canary -> 카나리"]),
])
def test_the_glossary_check_finds_a_missing_term(english, korean, expected):
    assert i18n.glossary_violations(english, korean) == expected
