"""The CDA renderer: every published and generated example renders; hostile input never runs."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from lxml import etree
from markupsafe import Markup

from carnet.domain.errors import InvalidResource, PayloadTooLarge
from carnet.feeds.cda import BodyLevel, parse_cda
from carnet.synthetic import generate_population
from carnet.web.cda_render import EmbeddedBody, render_cda
from paths import EXTERNAL

ANS = EXTERNAL / "ans-cisis-cda-examples" / "cda"
CCDA = EXTERNAL / "hl7-ccda-examples" / "documents"
EXAMPLES = sorted([*ANS.glob("*.xml"), *CCDA.glob("*.xml")])

#: Tags the renderer may write; anything else in its output is a bug.
ALLOWED_TAGS = frozenset(
    {
        "article", "h2", "h3", "h4", "h5", "h6", "dl", "dt", "dd", "p", "section", "div", "span", "strong",
        "em", "u", "ul", "ol", "li", "small", "a", "img", "br", "sub", "sup", "table", "caption",
        "colgroup", "col", "thead", "tbody", "tfoot", "tr", "th", "td",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = frozenset(
    {"class", "lang", "id", "href", "rel", "src", "alt", "colspan", "rowspan", "span", "scope"}
)


class _Audit(HTMLParser):
    """Collects every tag and attribute of rendered HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(attrs)


def _audit(html: str) -> _Audit:
    audit = _Audit()
    audit.feed(html)
    audit.close()
    return audit


def assert_safe(html: str) -> None:
    """Only whitelisted tags and attributes; links http(s)/anchors; images data:png/jpeg."""
    audit = _audit(html)
    assert set(audit.tags) <= ALLOWED_TAGS, set(audit.tags) - ALLOWED_TAGS
    for name, value in audit.attributes:
        assert name in ALLOWED_ATTRIBUTES, name
        if name == "href":
            assert value is not None
            assert value.startswith(("http://", "https://", "#cda-")), value
        if name == "src":
            assert value is not None
            assert re.fullmatch(r"data:image/(png|jpeg);base64,[A-Za-z0-9+/=]+", value), value[:60]
    assert "<script" not in html.lower()
    assert "javascript:" not in html.lower()


def _generated() -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for patient in generate_population(2, 7, documents_per_patient=9):
        for entry in patient.bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] == "Binary" and resource["contentType"] == "text/xml":
                out.append((entry["fullUrl"], base64.b64decode(resource["data"])))
    return out


GENERATED = _generated()


def _cda(narrative: str, *, extra: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:x="urn:evil">'
        '<title>Compte rendu</title><effectiveTime value="20240312140500+0100"/>'
        "<recordTarget><patientRole>"
        '<id root="1.2.250.1.213.1.4.10" extension="279035121518989"/>'
        '<patient><name><given>Élodie</given><family qualifier="BR">Müller</family></name>'
        '<administrativeGenderCode code="F"/><birthTime value="19790312"/></patient>'
        "</patientRole></recordTarget>"
        "<author><assignedAuthor><assignedPerson><name><prefix>Dr</prefix><given>Jean</given>"
        "<family>Martin</family></name></assignedPerson></assignedAuthor></author>"
        "<custodian><assignedCustodian><representedCustodianOrganization><name>CH de Brive</name>"
        "</representedCustodianOrganization></assignedCustodian></custodian>"
        f"<component><structuredBody><component><section><title>Motif</title><text>{narrative}</text>"
        f"</section></component></structuredBody></component>{extra}</ClinicalDocument>"
    ).encode()


@pytest.mark.external
def test_examples_are_there() -> None:
    """The shared folders hold the ANS and C-CDA examples this suite renders."""
    assert len(list(ANS.glob("*.xml"))) > 50
    assert len(list(CCDA.glob("*.xml"))) > 10


def test_generated_documents_are_there() -> None:
    """The synthetic population yields the CDA documents this suite renders without the corpus."""
    assert len(GENERATED) >= 10


@pytest.mark.external
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_every_published_example_renders_safely(path: Path) -> None:
    """Each ANS CI-SIS and HL7 C-CDA example renders to whitelisted HTML with its title."""
    data = path.read_bytes()
    header = parse_cda(data)
    html = render_cda(data)
    assert isinstance(html, Markup)
    assert_safe(html)
    assert html.startswith('<article class="cda"')
    if header.title:
        assert str(Markup.escape(" ".join(header.title.split()))) in html
    assert isinstance(html, EmbeddedBody) == (header.level is BodyLevel.UNSTRUCTURED)
    if header.level is BodyLevel.STRUCTURED:
        body = etree.fromstring(data).find("{urn:hl7-org:v3}component/{urn:hl7-org:v3}structuredBody")
        assert body is not None
        sections = body.iterfind(".//{urn:hl7-org:v3}section")
        assert html.count('<section class="cda-section">') == len(list(sections))


@pytest.mark.parametrize(("url", "data"), GENERATED, ids=[url for url, _ in GENERATED])
def test_every_generated_document_renders(url: str, data: bytes) -> None:
    """The synthetic CDA documents (level 1 with a PDF, level 3) render, in French and English."""
    header = parse_cda(data)
    for language in ("fr", "en"):
        html = render_cda(data, language)
        assert_safe(html)
        if header.level is BodyLevel.UNSTRUCTURED:
            assert isinstance(html, EmbeddedBody)
            assert html.media_type == "application/pdf"
        else:
            assert not isinstance(html, EmbeddedBody)
            assert "<section" in html


def test_header_shows_patient_author_date_custodian() -> None:
    """The header lists the patient (name, birth date, sex, INS), the author, the date and custodian."""
    html = render_cda(_cda("<paragraph>Douleur</paragraph>"))
    assert "<h2>Compte rendu</h2>" in html
    assert "Élodie Müller, né(e) le 12/03/1979, sexe féminin, INS 279035121518989" in html
    assert "Dr Jean Martin" in html
    assert "12/03/2024 à 14:05" in html
    assert "CH de Brive" in html
    english = render_cda(_cda("<paragraph>Douleur</paragraph>"), "en")
    assert "born 1979-03-12, sex female" in english
    assert "<dt>Custodian</dt>" in english


def test_narrative_maps_to_html() -> None:
    """Paragraphs, lists, tables, styles, sub/sup, br and captions map to their HTML."""
    narrative = (
        '<paragraph styleCode="Bold">Gras</paragraph>'
        '<list listType="ordered"><caption>Étapes</caption><item>un</item><item>deux</item></list>'
        "<list><item><content styleCode='Italics'>pu</content>ce</item></list>"
        '<table border="1" width="100%"><caption>Résultats</caption><thead><tr><th scope="col">Examen</th>'
        '<th onclick="x()">Valeur</th></tr></thead><tbody><tr><td colspan="2" rowspan="x">'
        "HbA1c<sub>c</sub><sup>2</sup><br/>6,1 %</td></tr></tbody></table>"
    )
    html = render_cda(_cda(narrative))
    assert "<p><strong>Gras</strong></p>" in html
    assert '<p class="cda-caption">Étapes</p><ol><li>un</li><li>deux</li></ol>' in html
    assert "<ul><li><span><em>pu</em></span>ce</li></ul>" in html
    assert '<table><caption>Résultats</caption><thead><tr><th scope="col">Examen</th><th>Valeur</th>' in html
    assert '<td colspan="2">HbA1c<sub>c</sub><sup>2</sup><br>6,1 %</td>' in html
    assert_safe(html)


def test_level1_document_asks_for_the_pdf() -> None:
    """A nonXMLBody document gives an EmbeddedBody marker carrying its media type."""
    pdf = base64.b64encode(b"%PDF-1.4 fake").decode()
    data = _cda("x").replace(
        b"<component><structuredBody><component><section><title>Motif</title><text>x</text>"
        b"</section></component></structuredBody></component>",
        f'<component><nonXMLBody><text mediaType="application/pdf" representation="B64">{pdf}</text>'
        "</nonXMLBody></component>".encode(),
    )
    html = render_cda(data)
    assert isinstance(html, EmbeddedBody)
    assert html.media_type == "application/pdf"
    assert "Le contenu de ce document est joint (PDF)" in html


@pytest.mark.parametrize(
    "narrative",
    [
        "<script>alert(1)</script>",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "&#60;script&#62;alert(1)&#60;/script&#62;",
        '<paragraph onclick="alert(1)" style="x" class="y">texte</paragraph>',
        '<linkHtml href="javascript:alert(1)">lien</linkHtml>',
        '<linkHtml href=" JavaScript:alert(1)">lien</linkHtml>',
        '<linkHtml href="data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;">lien</linkHtml>',
        '<linkHtml href="http://ex.org/&quot; onmouseover=&quot;alert(1)">lien</linkHtml>',
        '<x:script xmlns:x="http://www.w3.org/1999/xhtml">alert(1)</x:script>',
        '<content ID="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;">x</content>',
        '<iframe src="http://evil"/>',
        '<renderMultiMedia referencedObject="nope"><caption>&lt;img onerror=alert(1)&gt;</caption></renderMultiMedia>',
        '<table><tr><td colspan="1&quot; onclick=&quot;x">a</td></tr><script>alert(1)</script></table>',
        '<paragraph><img src="x" onerror="alert(1)"/>fin</paragraph>',
        '<list listType="ordered&quot;&gt;&lt;script&gt;"><item>a</item></list>',
        "<!-- <script>alert(1)</script> -->",
    ],
)
def test_hostile_narrative_never_produces_script(narrative: str) -> None:
    """Script tags, handlers, javascript:/data: hrefs and foreign elements never reach the HTML."""
    html = render_cda(_cda(narrative))
    assert_safe(html)
    assert "onclick" not in html
    assert "onerror=" not in html.replace("&lt;img onerror=alert(1)&gt;", "")
    assert "<iframe" not in html


def test_escaped_text_stays_text() -> None:
    """Markup written as text in the narrative is shown as text, escaped."""
    html = render_cda(_cda("<paragraph>&lt;b&gt;gras&lt;/b&gt; &amp; 5 &lt; 6</paragraph>"))
    assert "<p>&lt;b&gt;gras&lt;/b&gt; &amp; 5 &lt; 6</p>" in html


def test_links_only_http_and_internal_anchors() -> None:
    """A linkHtml keeps http(s) and #anchors (prefixed) and loses anything else but its text."""
    html = render_cda(
        _cda(
            '<content ID="n1">note</content><linkHtml href="https://ex.org/a?b=1&amp;c=2">web</linkHtml>'
            '<linkHtml href="#n1">voir</linkHtml><linkHtml href="Documents/DCI.pdf">pdf</linkHtml>'
        )
    )
    assert '<span id="cda-n1">note</span>' in html
    assert '<a href="https://ex.org/a?b=1&amp;c=2" rel="noopener noreferrer nofollow">web</a>' in html
    assert '<a href="#cda-n1" rel="noopener noreferrer nofollow">voir</a>' in html
    assert "pdf" in html
    assert "Documents/DCI.pdf" not in html


def test_images_only_inline_png_or_jpeg() -> None:
    """renderMultiMedia shows a data: image for an inline PNG/JPEG observationMedia, else a label."""
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    extra = (
        f'<x:a><observationMedia xmlns="urn:hl7-org:v3" ID="IMG1"><value mediaType="image/png" representation="B64">{png}</value></observationMedia>'
        '<observationMedia xmlns="urn:hl7-org:v3" ID="SVG1"><value mediaType="image/svg+xml" representation="B64">PHN2Zz48L3N2Zz4=</value></observationMedia>'
        '<observationMedia xmlns="urn:hl7-org:v3" ID="BAD1"><value mediaType="image/jpeg" representation="B64">&lt;&gt;!!</value></observationMedia></x:a>'
    )
    html = render_cda(
        _cda(
            '<renderMultiMedia referencedObject="IMG1"><caption>Courbe</caption></renderMultiMedia>'
            '<renderMultiMedia referencedObject="SVG1"/><renderMultiMedia referencedObject="BAD1"/>',
            extra=extra,
        )
    )
    assert f'<img class="cda-image" alt="Courbe" src="data:image/png;base64,{png}">' in html
    assert html.count("<img") == 1
    assert html.count("cda-image-missing") == 2
    assert_safe(html)


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&e;</title></ClinicalDocument>',
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol2;</title></ClinicalDocument>',
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&undefined;</title></ClinicalDocument>',
        b'<html xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></html>',
        b"<ClinicalDocument xmlns='urn:hl7-org:v3'><title>unclosed",
        b"",
    ],
    ids=["xxe", "billion-laughs", "undefined-entity", "not-cda", "malformed", "empty"],
)
def test_unsafe_documents_are_refused(data: bytes) -> None:
    """DOCTYPEs (XXE, entity bombs), undefined entities, other roots and bad XML raise InvalidResource."""
    with pytest.raises(InvalidResource):
        render_cda(data)


def test_huge_documents_are_refused() -> None:
    """A document over the size limit, or nested beyond the parser's depth, raises PayloadTooLarge."""
    with pytest.raises(PayloadTooLarge):
        render_cda(_cda("<paragraph>" + "x" * 2_000 + "</paragraph>"), max_bytes=1_000)
    deep = "<content>" * 5_000 + "x" + "</content>" * 5_000
    with pytest.raises((PayloadTooLarge, InvalidResource)):
        render_cda(_cda(deep))


def test_large_narrative_renders_in_linear_time() -> None:
    """A narrative of 20,000 paragraphs renders (no quadratic blow-up), all escaped."""
    narrative = "<paragraph>&lt;script&gt;</paragraph>" * 20_000
    html = render_cda(_cda(narrative))
    assert html.count("<p>&lt;script&gt;</p>") == 20_000
