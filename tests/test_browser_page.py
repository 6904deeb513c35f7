"""The spot-check page in a real browser: `python -m serving` on a small export, Debian's chromium (headless,
closed network, driven over the DevTools pipe) opens GET /, draws examples in three scripts, submits a pair
by keyboard and an invalid one, and the DOM shows labels, probabilities, gold labels, the running tally and
the API's error next to the field it names. Screenshots go to test-artifacts/page/ (or
$STILTS_TEST_ARTIFACTS/page/) with page.json (the page's weight in bytes)."""

from __future__ import annotations

import json

import httpx
import pytest

from cdp import Browser
from helpers import serve
from test_browser import ARTIFACTS, FLAGS, chromium

LABELS = ["entailment", "neutral", "contradiction"]
DRAWS = [("fr", 6, 11), ("ru", 5, 12), ("zh", 5, 13)]  # Latin, Cyrillic, CJK: (language, pairs, seed)

CARDS = """[...document.querySelectorAll('#results .example')].map(li => ({
  lang: li.dataset.lang, gold: li.dataset.gold, pred: li.dataset.pred, agree: li.dataset.agree,
  shownPred: li.querySelector('.pred').textContent, shownGold: li.querySelector('.gold').textContent,
  verdict: li.querySelector('.agree, .disagree').textContent,
  texts: [...li.querySelectorAll('p > span[dir]')].map(s => s.textContent),
  probs: Object.fromEntries([...li.querySelectorAll('.prob')].map(p => [p.dataset.label, Number(p.textContent)])),
  widths: [...li.querySelectorAll('.bar')].map(b => b.style.width)}))"""
TALLY = """Object.fromEntries([...document.querySelectorAll('#tally tbody tr')].map(tr =>
  [tr.dataset.lang, [...tr.cells].slice(1, 3).map(td => Number(td.textContent))]))"""


def _draw(page: Browser, lang: str, n: int, seed: int) -> None:
    before = page.evaluate("document.querySelectorAll('#results .example').length")
    page.evaluate(f"""(() => {{ document.getElementById('lang').value = {json.dumps(lang)};
        document.getElementById('n').value = '{n}'; document.getElementById('seed').value = '{seed}';
        document.querySelector('#draw-form button').click(); }})()""")
    page.wait_for(f"document.querySelectorAll('#results .example').length === {before + n}")


@pytest.mark.slow
def test_the_page_draws_scores_and_shows_errors_next_to_their_field(exported, tmp_path):
    browser = chromium()
    out = ARTIFACTS / "page"
    out.mkdir(parents=True, exist_ok=True)
    server, url = serve(["--model-uri", str(exported[0])])
    page = None
    try:
        weight = len(httpx.get(f"{url}/").content)
        page = Browser(browser, [f for f in FLAGS if not f.startswith("--virtual-time-budget")], tmp_path / "profile")
        page.viewport(1200, 900)
        page.goto(f"{url}/")
        page.wait_for("document.body.dataset.ready === 'true'")

        # the model card: from GET /v1/model, with the plain note that these languages are synthetic
        card = page.evaluate("document.getElementById('card').textContent")
        assert "smoke" in card and "20 test pairs per language" in card and "local export" in card
        assert "languages are synthetic" in page.evaluate("document.getElementById('synthetic-note').textContent")
        assert page.evaluate("document.getElementById('synthetic-note').hidden") is False
        # ... and a registry version's card (what GET /v1/model says for models:/stilts-xnli-onnx@champion)
        page.evaluate("""renderCard({name: 'stilts-xnli-onnx', version: '3', alias: 'champion', subset: 'mnli-squad',
            k: '2', preset: 'xlmr-base', variant: 'fp32', languages: ['en', 'fr'], synthetic: false,
            dev_accuracy: {en: 0.851, fr: 0.792}, examples: {split: 'test', preset: 'xlmr-base', synthetic: false,
            per_language: {en: 20, fr: 20}}})""")
        registry_card = page.evaluate("[...document.querySelectorAll('#card dd')].map(d => d.textContent)")
        assert registry_card[:4] == ["stilts-xnli-onnx", "3", "champion", "mnli-squad"]
        assert page.evaluate("[...document.querySelectorAll('#dev-table tbody td')].map(d => d.textContent)") == [
            "en",
            "0.851",
            "fr",
            "0.792",
        ]
        assert page.evaluate("document.getElementById('synthetic-note').hidden") is True
        page.evaluate("renderCard(state.info)")
        options = page.evaluate("[...document.getElementById('lang').options].map(o => o.value)")
        assert options[0] == "all" and len(options) == 16

        # draws in three scripts; what the page shows is what the API answers for the same draw
        for lang, n, seed in DRAWS:
            _draw(page, lang, n, seed)
        cards = page.evaluate(CARDS)
        assert len(cards) == sum(n for _, n, _ in DRAWS)
        for lang, n, seed in DRAWS:
            shown = [c for c in cards if c["lang"] == lang]
            drawn = httpx.get(f"{url}/v1/examples", params={"lang": lang, "n": n, "seed": seed}).json()["examples"]
            pairs = [{"premise": e["premise"], "hypothesis": e["hypothesis"]} for e in drawn]
            scored = httpx.post(f"{url}/v1/nli", json={"pairs": pairs}).json()["results"]
            assert len(shown) == n
            for c, e, s in zip(shown, drawn, scored):
                assert c["texts"] == [e["premise"], e["hypothesis"]] and c["gold"] == c["shownGold"] == e["label"]
                assert c["pred"] == c["shownPred"] == s["label"] and c["pred"] in LABELS
                assert c["agree"] == str(c["pred"] == c["gold"]).lower()
                assert c["verdict"].startswith("✓" if c["pred"] == c["gold"] else "✗")
                assert list(c["probs"]) == LABELS and sum(c["probs"].values()) == pytest.approx(1.0, abs=2e-3)
                for label in LABELS:
                    assert c["probs"][label] == pytest.approx(s["probabilities"][label], abs=6e-4)
                assert all(w.endswith("%") for w in c["widths"])
        tally = page.evaluate(TALLY)
        for lang, n, _ in DRAWS:
            agree = sum(c["agree"] == "true" for c in cards if c["lang"] == lang)
            assert tally[lang] == [agree, n]
        assert tally["total"] == [sum(c["agree"] == "true" for c in cards), len(cards)]
        assert "zh" in page.evaluate("document.getElementById('draw-status').textContent")
        page.screenshot(out / "page_examples.png")

        # a free-text pair, by keyboard: type, Tab to the next field, Enter submits
        page.evaluate("document.getElementById('premise').focus()")
        page.type("Tom buys a big dog .")
        page.press("Tab")
        assert page.evaluate("document.activeElement.id") == "hypothesis"
        page.type("Tom buys a small dog .")
        page.press("Enter")
        page.wait_for("document.querySelector('#pair-result .pair-answer') !== null")
        answer = httpx.post(
            f"{url}/v1/nli", json={"premise": "Tom buys a big dog .", "hypothesis": "Tom buys a small dog ."}
        ).json()["results"][0]
        assert page.evaluate("document.querySelector('#pair-result .pred').textContent") == answer["label"]
        probs = page.evaluate("[...document.querySelectorAll('#pair-result .prob')].map(p => Number(p.textContent))")
        assert probs == pytest.approx([answer["probabilities"][x] for x in LABELS], abs=6e-4)

        # an invalid pair: the API's 422 is shown next to the field it names, which gets the focus
        page.evaluate("document.getElementById('premise').value = '   '")
        page.evaluate("document.querySelector('#pair-form button').click()")
        error = page.wait_for("document.getElementById('premise-err').textContent")
        assert error == "premise: must be a non-empty string (HTTP 422)"
        assert page.evaluate("document.getElementById('premise').getAttribute('aria-invalid')") == "true"
        assert page.evaluate("document.activeElement.id") == "premise"
        assert page.evaluate("document.getElementById('hypothesis-err').textContent") == ""
        # ... and a bad draw and a zero-shot template without its slot, each next to its own field
        page.evaluate("document.getElementById('n').value = '0'; document.querySelector('#draw-form button').click()")
        assert "n: is 0; draw between 1 and" in page.wait_for("document.getElementById('n-err').textContent")
        page.evaluate("""document.getElementById('zs-text').value = 'Tom buys a big dog .';
            document.getElementById('zs-labels').value = 'large, small';
            document.getElementById('zs-template').value = 'no slot';
            document.querySelector('#zs-form button').click()""")
        assert page.wait_for("document.getElementById('zs-template-err').textContent").startswith(
            "hypothesis_template: must contain '{}'"
        )
        page.screenshot(out / "page_errors.png")
        page.evaluate(
            "document.getElementById('zs-template').value = 'Tom buys a {} dog .'; "
            "document.querySelector('#zs-form button').click()"
        )
        page.wait_for("document.querySelectorAll('#zs-result .prob').length === 2")
        assert page.evaluate("document.getElementById('zs-template-err').textContent") == ""

        # a narrow window: nothing wider than the screen
        page.viewport(380, 800)
        _draw(page, "ar", 3, 14)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(out / "page_narrow.png")
        assert page.errors == [], page.errors  # no script error, no CSP violation

        # the page's requests went through the API's metrics and error rules
        metrics = httpx.get(f"{url}/metrics").text
        for line in (
            'endpoint="/",status="200"',
            'endpoint="/v1/examples",status="200"',
            'endpoint="/v1/examples",status="422"',
            'endpoint="/v1/nli",status="422"',
            'endpoint="/v1/zero-shot",status="422"',
            'endpoint="/v1/model",status="200"',
        ):
            assert f"stilts_requests_total{{{line}}}" in metrics
    finally:
        if page is not None:
            page.close()
        server.terminate()
        server.wait(timeout=30)
    shots = {name: (out / name).stat().st_size for name in ("page_examples.png", "page_errors.png", "page_narrow.png")}
    assert all(size > 20_000 for size in shots.values()), shots  # rendered pages, not blank ones
    (out / "page.json").write_text(json.dumps({"page_bytes": weight, "screenshots": shots}, indent=1))
