"""The Korean site (/ko/): the same book from locale/ko, a language switcher on every page, Hangul
that renders — checked on the rendered glyphs, in the browser and in the plots' pixels."""

from __future__ import annotations

import asyncio
import html
import html.parser
import pathlib
import re
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from book_browser import visit  # noqa: E402
from glyphs import box_template, count_boxes, crop, png_ink, render_text  # noqa: E402

import course_i18n as i18n  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
KOREAN_TITLE = "CloudMart 코스"
HANGUL = re.compile("[\uac00-\ud7a3]")
TITLE_PT = 12.0          # matplotlib's axes.titlesize "large" at its default font.size 10

# In the page: draw each Hangul syllable of the h1 on a canvas with the h1's own font, and the glyph
# of a code point no font has (U+10FFFD: the browser's missing-glyph box); a syllable drawn like
# that box, or drawn as nothing, is tofu. The control draws the same syllables with the system's
# sans-serif only (no Hangul font on the test machine: every one must come out as tofu there).
GLYPH_JS = r"""
(() => {
  if (document.fonts.status !== "loaded") return null;
  const h1 = document.querySelector("article h1, main h1, h1");
  if (!h1) return null;
  const style = getComputedStyle(h1);
  const canvas = document.createElement("canvas");
  canvas.width = 160; canvas.height = 120;
  const ctx = canvas.getContext("2d");
  const draw = (ch, font) => {
    ctx.clearRect(0, 0, 160, 120);
    ctx.font = font; ctx.fillStyle = "#000"; ctx.textBaseline = "top";
    ctx.fillText(ch, 20, 20);
    const alpha = ctx.getImageData(0, 0, 160, 120).data.filter((_, i) => i % 4 === 3);
    return alpha.join(",");
  };
  const own = `${style.fontWeight} 48px ${style.fontFamily}`;
  const plain = `${style.fontWeight} 48px sans-serif`;
  const blank = draw(" ", own);
  const chars = [...new Set([...h1.textContent].filter((ch) => ch >= "\uac00" && ch <= "\ud7a3"))];
  const tofu = (font) => {
    const box = draw("\u{10FFFD}", font);
    return chars.filter((ch) => { const g = draw(ch, font); return g === box || g === blank; });
  };
  return {h1: h1.textContent, lang: document.documentElement.lang, family: style.fontFamily, chars,
          tofu: tofu(own), controlTofu: tofu(plain),
          switcher: [...document.querySelectorAll("nav.language-switcher a")].map((a) => a.getAttribute("href"))};
})()
"""


def load(url: str, chromium, artifacts_dir: pathlib.Path, page: str, name: str):
    return asyncio.run(visit(chromium.ws_url, url + page, artifacts_dir / f"{name}.png", ready_js=GLYPH_JS))


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.switcher: list[str] = []
        self.images: list[str] = []
        self.lang = None
        self._in = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        if tag == "nav" and "language-switcher" in (a.get("class") or ""):
            self._in = True
        if self._in and tag == "a":
            self.switcher.append(a["href"])
        if tag == "img" and a.get("src", "").endswith(".png"):
            self.images.append(a["src"])

    def handle_endtag(self, tag):
        if tag == "nav":
            self._in = False


def parse(page: pathlib.Path) -> _Links:
    links = _Links()
    links.feed(page.read_text(encoding="utf-8"))
    return links


def test_every_page_links_its_other_language(built_site, korean_site):
    pages = sorted(p.relative_to(built_site) for p in built_site.rglob("*.html") if "_static" not in p.parts)
    assert len(pages) >= 10
    for relative in pages:
        for site, other in ((built_site, korean_site), (korean_site, built_site)):
            page = site / relative
            assert page.is_file(), f"{relative} is missing from {site.name}/"
            if relative.name in ("genindex.html", "search.html"):
                continue
            links = parse(page)
            assert links.lang == site.name, (page, links.lang)
            assert len(links.switcher) == 1, (page, links.switcher)
            target = (page.parent / links.switcher[0]).resolve()
            assert target == (other / relative).resolve(), (page, links.switcher)


def test_the_korean_pages_are_translated(korean_site):
    for page in ("index", "architecture", "glossary", "how-to-read", "days/day1", "days/day4",
                 "notebooks/day4-gitops/02-actions-basics"):
        text = (korean_site / f"{page}.html").read_text(encoding="utf-8")
        assert len(HANGUL.findall(text)) > 40, page
    index = (korean_site / "index.html").read_text(encoding="utf-8")
    assert f"<title>{KOREAN_TITLE} &#8212; {KOREAN_TITLE}</title>" in index
    assert "마이크로서비스와 도메인 주도 설계" in index and "Microservices and domain-driven design" not in index
    notebook = (korean_site / "notebooks/day4-gitops/02-actions-basics.html").read_text(encoding="utf-8")
    assert "GitHub Actions 기초" in notebook and "You will be able to" not in notebook
    assert "course-lang" not in notebook and "os.environ[" not in notebook    # the language cell is hidden


def test_the_glossary_table_goes_both_ways(built_site, korean_site):
    entries = i18n.glossary()
    en = (built_site / "glossary.html").read_text(encoding="utf-8")
    ko = (korean_site / "glossary.html").read_text(encoding="utf-8")
    by_en = [e["en"] for e in sorted(entries, key=lambda e: e["en"].lower())]
    by_ko = [e["ko"] for e in sorted(entries, key=lambda e: e["ko"].lower())]
    cells_en = re.findall(r'<p class="lang-en">([^<]*)</p>', en)
    cells_ko = re.findall(r'<p class="lang-ko">([^<]*)</p>', ko)
    def plain(cells):      # Sphinx's smart quotes turn ' into ’
        return [html.unescape(c).replace("\u2019", "'") for c in cells]

    assert plain(cells_en) == by_en
    assert plain(cells_ko) == by_ko
    assert "서킷 브레이커" in ko


def test_korean_page_title_and_glyphs_in_the_browser(korean_site_url, chromium, artifacts_dir):
    result = load(korean_site_url, chromium, artifacts_dir, "how-to-read.html", "ko-how-to-read")
    facts, glyphs = result.facts, result.facts["ready"]
    assert facts["title"] == f"이 책을 읽는 방법 - {KOREAN_TITLE}" or facts["title"].endswith(KOREAN_TITLE), facts["title"]
    assert glyphs and glyphs["lang"] == "ko" and "이 책을 읽는 방법" in glyphs["h1"], glyphs
    assert "NanumGothic" in glyphs["family"], glyphs
    assert glyphs["chars"] and glyphs["tofu"] == [], glyphs
    assert sorted(glyphs["controlTofu"]) == sorted(glyphs["chars"]), glyphs     # the detector can fail
    assert facts["images"] >= 1 and facts["nonBlankImages"] == facts["images"], facts
    assert not [u for u in result.requests if not u.startswith(korean_site_url.rsplit("ko/", 1)[0])]
    assert any(u.endswith("NanumGothic.ttf") for u in result.requests), "the web font was not loaded"
    assert glyphs["switcher"] == ["../en/how-to-read.html"]


def test_the_box_detector_finds_tofu_and_only_tofu():
    title = "가동률 70 %에서 90 % 사이에 평균 지연 시간이 3.0배로 늘어납니다"
    template = box_template(TITLE_PT)
    boxes = count_boxes(render_text(title, ["DejaVu Sans"], TITLE_PT), template)
    assert boxes == len(HANGUL.findall(title)), boxes           # each syllable a box without a Hangul font
    i18n.use_korean_fonts()
    assert count_boxes(render_text(title, ["DejaVu Sans", "NanumGothic"], TITLE_PT), template) == 0


def test_the_korean_plot_has_hangul_glyphs_and_no_box(built_site, korean_site):
    ko_page, en_page = korean_site / "how-to-read.html", built_site / "how-to-read.html"
    ko_images, en_images = parse(ko_page).images, parse(en_page).images
    assert ko_images and len(ko_images) == len(en_images)
    template = box_template(TITLE_PT)
    ko_plot = png_ink(ko_page.parent / ko_images[0])
    en_plot = png_ink(en_page.parent / en_images[0])
    assert count_boxes(ko_plot, template) == 0      # on the tofu plot this build once made, it found 22
    # the control: the same detector finds the boxes of a Korean title drawn without a Hangul font
    assert count_boxes(render_text("평균 지연 시간", ["DejaVu Sans"], TITLE_PT), template) == 6
    # the Korean plot is another drawing than the English one (its labels are Korean)
    assert ko_plot.shape != en_plot.shape or abs(ko_plot - en_plot).mean() > 0.005
    assert crop(ko_plot).size > 0
    assert "missing from font" not in ko_page.read_text(encoding="utf-8")
