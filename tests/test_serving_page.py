"""Spot checks: the export ships labelled test pairs per language (examples.json, in its manifest), GET
/v1/examples draws them reproducibly with their gold labels and answers every bad parameter with a 4xx JSON
naming it, an export made before examples existed still serves (404 on /v1/examples only), a tampered
examples file is refused, and GET / is one self-contained page under a strict Content-Security-Policy."""

import base64
import hashlib
import json
import re
import shutil

import pytest
from fastapi.testclient import TestClient

from serving import examples as spot
from serving.app import create_app
from serving.card import model_info
from serving.engine import CHECKSUM_FILE, IntegrityError, NLIEngine, sha256_file
from serving.schemas import Limits

LIMITS = Limits(max_pairs=32, max_labels=3, max_chars=2000, max_body_bytes=65536)
LABELS = ("entailment", "neutral", "contradiction")


def _client(engine):
    return TestClient(create_app(engine, model_info(engine), LIMITS), follow_redirects=False)


@pytest.fixture(scope="module")
def engine(exported):
    return NLIEngine.load(exported[0])


@pytest.fixture(scope="module")
def client(engine):
    with _client(engine) as c:
        yield c


@pytest.fixture
def older_export(exported, tmp_path):
    """The export as `stilts export` wrote it before examples existed: no file, no manifest entry."""
    out = tmp_path / "older"
    shutil.copytree(exported[0], out)
    (out / spot.EXAMPLES_FILE).unlink()
    recorded = json.loads((out / CHECKSUM_FILE).read_text())
    del recorded[spot.EXAMPLES_FILE]
    (out / CHECKSUM_FILE).write_text(json.dumps(recorded))
    return out


@pytest.mark.slow
def test_export_ships_test_pairs_of_every_language_in_its_manifest(exported, spot_examples):
    out = exported[0]
    recorded = json.loads((out / CHECKSUM_FILE).read_text())
    assert recorded[spot.EXAMPLES_FILE] == sha256_file(out / spot.EXAMPLES_FILE)
    shipped = json.loads((out / spot.EXAMPLES_FILE).read_text())
    assert shipped["split"] == "test" and shipped["preset"] == "smoke" and shipped["synthetic"] is True
    assert len(shipped["examples"]) == 15 and all(len(rows) == 20 for rows in shipped["examples"].values())
    assert shipped["examples"] == spot_examples["examples"]
    for rows in shipped["examples"].values():  # gold labels as even as 20 allows
        counts = sorted(sum(r["label"] == label for r in rows) for label in LABELS)
        assert counts == [6, 7, 7]


@pytest.mark.slow
def test_the_sample_comes_from_the_test_split_the_model_was_evaluated_on(spot_examples, smoke_cache, monkeypatch):
    from stilts_mlflow.spotcheck import xnli_test

    monkeypatch.setenv("STILTS_CACHE", str(smoke_cache))
    test = xnli_test("smoke")
    for lang, rows in spot_examples["examples"].items():
        assert {(r["premise"], r["hypothesis"], r["label"]) for r in rows} <= set(test[lang])


@pytest.mark.slow
def test_examples_are_drawn_with_gold_labels_and_the_same_seed_draws_the_same(client, exported):
    shipped = json.loads((exported[0] / spot.EXAMPLES_FILE).read_text())["examples"]
    r = client.get("/v1/examples", params={"lang": "zh", "n": 5, "seed": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["lang"] == "zh" and body["seed"] == 7 and body["split"] == "test" and body["synthetic"] is True
    assert len(body["examples"]) == 5 and {e["lang"] for e in body["examples"]} == {"zh"}
    pairs = [{k: e[k] for k in ("premise", "hypothesis", "label")} for e in body["examples"]]
    assert all(p in shipped["zh"] for p in pairs) and len({p["premise"] + p["hypothesis"] for p in pairs}) == 5
    assert client.get("/v1/examples", params={"lang": "zh", "n": 5, "seed": 7}).json() == body
    assert client.get("/v1/examples", params={"lang": "zh", "n": 5, "seed": 8}).json()["examples"] != body["examples"]
    pooled = client.get("/v1/examples", params={"n": 30, "seed": 1}).json()  # lang=all by default
    assert pooled["lang"] == "all" and len(pooled["examples"]) == 30
    assert len({e["lang"] for e in pooled["examples"]}) > 5
    unseeded = client.get("/v1/examples", params={"lang": "ar"}).json()  # the server picks a seed and says which
    again = client.get("/v1/examples", params={"lang": "ar", "seed": unseeded["seed"]}).json()
    assert len(unseeded["examples"]) == 5 and again["examples"] == unseeded["examples"]


BAD = [
    ({"lang": "xx"}, "lang", "no examples for 'xx'"),
    ({"lang": ""}, "lang", "no examples for ''"),
    ({"lang": "fr", "n": 0}, "n", "draw between 1 and 32"),
    ({"lang": "fr", "n": 33}, "n", "draw between 1 and 32"),
    ({"lang": "fr", "n": 21}, "n", "this export has 20 examples for 'fr'"),
    ({"lang": "fr", "n": "five"}, "n", "integer"),
    ({"lang": "fr", "n": "2.5"}, "n", "integer"),
    ({"lang": "fr", "seed": -1}, "seed", "between 0 and"),
    ({"lang": "fr", "seed": "x"}, "seed", "integer"),
    ({"lang": "fr", "seed": "9" * 30}, "seed", "between 0 and"),
]


@pytest.mark.slow
@pytest.mark.parametrize("params, field, message", BAD)
def test_a_bad_parameter_is_a_422_naming_it(client, params, field, message):
    r = client.get("/v1/examples", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and r.json()["error"].startswith(f"{field}: ") and message in r.json()["error"]
    assert client.get("/v1/examples", params={"lang": "fr", "n": 2}).status_code == 200  # still serving


@pytest.mark.slow
def test_an_export_without_examples_still_serves_and_says_it_has_none(older_export):
    engine = NLIEngine.load(older_export)
    assert engine.examples is None
    with _client(engine) as c:
        r = c.get("/v1/examples", params={"lang": "fr"})
        assert r.status_code == 404 and r.json()["field"] == "path"
        assert "this export has no examples" in r.json()["error"] and "export the model again" in r.json()["error"]
        assert c.post("/v1/nli", json={"premise": "a .", "hypothesis": "b ."}).status_code == 200
        info = c.get("/v1/model").json()
        assert info["examples"] is None and info["synthetic"] is None
        assert c.get("/").status_code == 200


@pytest.mark.slow
def test_a_tampered_or_malformed_examples_file_is_refused(exported, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(exported[0], out)
    shipped = json.loads((out / spot.EXAMPLES_FILE).read_text())
    first = shipped["examples"]["fr"][0]
    first["label"] = "neutral" if first["label"] != "neutral" else "entailment"
    (out / spot.EXAMPLES_FILE).write_text(json.dumps(shipped))  # a gold label changed after export
    with pytest.raises(IntegrityError, match="examples.json: sha256 .* does not match the exported"):
        NLIEngine.load(out)
    first["label"] = "maybe"
    (out / spot.EXAMPLES_FILE).write_text(json.dumps(shipped))
    recorded = json.loads((out / CHECKSUM_FILE).read_text())
    recorded[spot.EXAMPLES_FILE] = sha256_file(out / spot.EXAMPLES_FILE)  # a directory carries no pin
    (out / CHECKSUM_FILE).write_text(json.dumps(recorded))
    with pytest.raises(IntegrityError, match=r"examples.json: examples.fr.0.label is 'maybe', not one of"):
        NLIEngine.load(out)


@pytest.mark.slow
def test_model_card_says_where_the_examples_come_from(client):
    info = client.get("/v1/model").json()
    assert info["synthetic"] is True
    assert info["examples"]["split"] == "test" and info["examples"]["preset"] == "smoke"
    assert info["examples"]["per_language"] == {lang: 20 for lang in info["languages"]}


@pytest.mark.slow
def test_the_page_is_one_self_contained_file_under_a_strict_policy(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    page, csp = r.text, r.headers["content-security-policy"]
    assert csp.startswith("default-src 'none'") and "connect-src 'self'" in csp and "unsafe" not in csp
    (script,) = re.findall(r"<script>(.*?)</script>", page, flags=re.S)  # allowed by its hash, nothing else
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}';" in csp
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no external asset
    assert "/v1/examples" in page and "/v1/nli" in page and "/v1/zero-shot" in page and "/v1/model" in page
    assert "/v1/examples" in client.get("/openapi.json").json()["paths"]
    client.get("/v1/examples", params={"lang": "nope"})
    metrics = client.get("/metrics").text  # the page and the draws are counted like every endpoint
    assert 'stilts_requests_total{endpoint="/",status="200"}' in metrics
    assert 'stilts_requests_total{endpoint="/v1/examples",status="422"}' in metrics
    assert len(r.content) < 40_000  # one page, no framework


def test_the_sample_is_fixed_balanced_and_says_whether_its_languages_are_synthetic(monkeypatch):
    from stilts_mlflow import spotcheck

    rows = [(f"p{i}", f"h{i}", LABELS[i % 3 if i < 30 else 0]) for i in range(60)]  # 40 entailment, 10+10 others
    test = {"en": rows, "sw": rows[:4]}
    picked = spotcheck.select(test, per_language=20, seed=0)
    assert picked == spotcheck.select(test, per_language=20, seed=0) != spotcheck.select(test, per_language=20, seed=1)
    assert sorted(sum(r["label"] == x for r in picked["en"]) for x in LABELS) == [6, 7, 7]
    assert len({r["premise"] for r in picked["en"]}) == 20 and len(picked["sw"]) == 4  # a short split: all of it
    monkeypatch.setattr(spotcheck, "xnli_test", lambda preset: test)  # real presets read XNLI through the hub loader
    spotcheck.for_preset.cache_clear()
    real = spotcheck.for_preset("xlmr-base")
    assert real["synthetic"] is False and real["preset"] == "xlmr-base" and real["examples"] == picked
    assert spotcheck.for_preset("tiny")["synthetic"] is True
    spotcheck.for_preset.cache_clear()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda o: o.update(format="other"), "expected an object with format"),
        (lambda o: o.update(synthetic="yes"), "field 'synthetic' must be true or false"),
        (lambda o: o.update(examples={}), "field 'examples' must be a non-empty object"),
        (lambda o: o["examples"].update(fr=[]), "examples.fr must be a non-empty list"),
        (lambda o: o["examples"]["fr"][0].update(premise=" "), "examples.fr.0 needs non-empty premise and hypothesis"),
        (lambda o: o["examples"]["fr"][0].pop("label"), "examples.fr.0.label is None, not one of the model's labels"),
    ],
)
def test_a_malformed_examples_file_is_one_clear_error(mutate, message):
    obj = json.loads(
        spot.dump(
            {"fr": [{"premise": "a .", "hypothesis": "b .", "label": "neutral"}]}, preset="tiny", synthetic=True, seed=0
        )
    )
    assert spot.parse(json.dumps(obj).encode(), "examples.json", LABELS) == obj
    mutate(obj)
    with pytest.raises(spot.ExamplesError, match=re.escape(message)):
        spot.parse(json.dumps(obj).encode(), "examples.json", LABELS)
