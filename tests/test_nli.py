import random
from collections import Counter

import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from stilts_mlflow.tasks.synthetic import SyntheticTasks
from stilts_mlflow.world.nli import NLIGenerator, join_label, styled


@pytest.mark.parametrize(
    "relations,label",
    [
        (["="], "entailment"),
        (["⊏"], "entailment"),
        (["=", "⊏"], "entailment"),
        (["|"], "contradiction"),
        (["#", "|"], "contradiction"),
        (["#"], "neutral"),
        (["⊐"], "neutral"),
        (["=", "#"], "neutral"),
    ],
)
def test_natural_logic_join(relations, label):
    assert join_label(relations) == label


def test_labels_balanced_within_every_signature(world):
    pairs = NLIGenerator(world).generate(3000, random.Random(0))
    by_sig = Counter((p.signature, p.label) for p in pairs)
    sigs = {p.signature for p in pairs}
    assert Counter(p.label for p in pairs) == {"entailment": 1000, "neutral": 1000, "contradiction": 1000}
    # every signature group holds each label equally often (up to the final cut)
    spread = [
        max(by_sig[(s, lab)] for lab in ("entailment", "neutral", "contradiction"))
        - min(by_sig[(s, lab)] for lab in ("entailment", "neutral", "contradiction"))
        for s in sigs
    ]
    assert sum(spread) <= 2


def test_synonym_hypernym_antonym_examples(world):
    gen = NLIGenerator(world)
    pairs = gen.generate(600, random.Random(1))
    lex = world.lexicon
    for p in pairs:
        prem, hyp = p.premise[0], p.hypothesis
        if prem.obj == hyp.obj and prem.verb != hyp.verb:  # only the verb changed
            a, b = lex.sense_of(prem.verb), lex.sense_of(hyp.verb)
            expected = "entailment" if a == b else "contradiction" if a.antonym == b.sid else "neutral"
            assert p.label == expected, (prem, hyp)


def _xnli(world):
    tasks = SyntheticTasks(world)
    return tasks.generate("xnli", "train", "en", 6000), tasks.generate("xnli", "test", "en", 600)


@pytest.mark.slow
def test_hypothesis_only_baseline_near_chance(world):
    train, test = _xnli(world)
    vec = CountVectorizer(token_pattern=r"\S+", ngram_range=(1, 2))
    x = vec.fit_transform([r["text_b"] for r in train])
    model = LogisticRegression(max_iter=2000).fit(x, [r["label"] for r in train])
    acc = model.score(vec.transform([r["text_b"] for r in test]), [r["label"] for r in test])
    assert abs(acc - 1 / 3) < 0.10, acc


def _overlap(r):
    a, b = r["text_a"].split(), r["text_b"].split()
    sa, sb = set(a), set(b)
    same = [int(x == y) for x, y in zip(a, b)] + [0] * 8
    return [len(sa & sb), len(sa & sb) / len(sa | sb), len(sb - sa), len(a), len(b)] + same[:8]


@pytest.mark.slow
def test_word_overlap_baseline_near_chance(world):
    train, test = _xnli(world)
    model = LogisticRegression(max_iter=2000).fit([_overlap(r) for r in train], [r["label"] for r in train])
    acc = model.score([_overlap(r) for r in test], [r["label"] for r in test])
    assert abs(acc - 1 / 3) < 0.10, acc


def test_nli_family_changes_one_property_word(world):
    """xnli/mnli/anli: one adjective changes; synonym -> entailment, antonym -> contradiction, else neutral."""
    pairs = NLIGenerator(world).generate(600, random.Random(2), slots=("adj",))
    lex = world.lexicon
    assert Counter(p.label for p in pairs) == {"entailment": 200, "neutral": 200, "contradiction": 200}
    for p in pairs:
        prem, hyp = p.premise[0], p.hypothesis
        assert (prem.verb, prem.obj.noun) == (hyp.verb, hyp.obj.noun) and prem.obj.adj != hyp.obj.adj
        a, b = lex.sense_of(prem.obj.adj), lex.sense_of(hyp.obj.adj)
        expected = "entailment" if a == b else "contradiction" if a.antonym == b.sid else "neutral"
        assert p.label == expected, (prem, hyp)


def test_styled_forms_vary_independently_of_the_label(world):
    """Surface forms (definite object, adverb, place, copular premise/hypothesis) come in every label
    alike, keep the property words, and move the hypothesis property to different positions."""
    gen = NLIGenerator(world)
    rng = random.Random(4)
    en = world.realizers["en"]
    forms: Counter = Counter()
    positions = set()
    for p in gen.generate(900, random.Random(3), slots=("adj",)):
        premise, hyp = styled(p, rng, gen.places)
        text_a, text_b = en.text(premise), en.sentence(hyp)
        assert world.english(p.premise[0].obj.adj) in text_a.split()
        assert world.english(p.hypothesis.obj.adj) in text_b.split()
        forms[(len(premise), type(hyp).__name__, "the" in text_b.split(), p.label)] += 1
        positions.add(text_b.split().index(world.english(p.hypothesis.obj.adj)))
    assert len(positions) >= 2, positions
    for label in ("entailment", "neutral", "contradiction"):
        assert {k[:3] for k in forms if k[3] == label} == {k[:3] for k in forms}
    by_form = Counter(k[:3] for k in forms.elements())
    assert min(by_form.values()) > 30, by_form
