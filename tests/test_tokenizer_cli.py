import json

import pytest
from click.testing import CliRunner
from transformers import AutoTokenizer

from stilts_mlflow.cli import main
from stilts_mlflow.tasks.synthetic import SyntheticTasks
from stilts_mlflow.tokenizer import train_tokenizer
from stilts_mlflow.world import NAMES, XNLI_LANGUAGES


@pytest.fixture(scope="module")
def corpus(world, tmp_path_factory):
    """60 MLM documents per language and the tokenizer (2,000 pieces) trained on all of them."""
    docs = {
        lang: [r["text"] for r in SyntheticTasks(world).generate("mlm", "train", lang, 60)] for lang in XNLI_LANGUAGES
    }
    out = train_tokenizer(
        [t for d in docs.values() for t in d], 2000, tmp_path_factory.mktemp("tok"), alphabet=world.alphabet()
    )
    return docs, AutoTokenizer.from_pretrained(str(out))


def test_tokenizer_is_xlmr_style_and_covers_all_languages(world, corpus):
    tasks = SyntheticTasks(world)
    tok = corpus[1]
    assert type(tok).__name__ == "XLMRobertaTokenizer"
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.mask_token_id == len(tok) - 1
    for lang in XNLI_LANGUAGES:
        rec = tasks.generate("xnli", "dev", lang, 3)[0]
        ids = tok(rec["text_a"], rec["text_b"])["input_ids"]
        assert ids[0] == 0 and ids[-1] == 2 and tok.unk_token_id not in ids, lang


def test_tokenizer_keeps_frequent_words_whole(corpus):
    """SentencePiece's unigram trainer split "the" into `▁th e` and "is" into `▁ is` on this world; the
    pieces must keep frequent words whole, so English costs well under two pieces per word."""
    docs, tok = corpus
    for word in ("the", "is", "a", "not", "."):
        assert tok.tokenize(word) == ["▁" + word], word
    english = docs["en"]
    pieces = sum(len(tok.tokenize(t)) for t in english)
    words = sum(len(t.split()) for t in english)
    assert pieces / words < 1.8, pieces / words


def test_unused_pieces_are_dropped_and_the_corpus_segments_as_before(world, corpus):
    """Pieces no corpus text is segmented into (BPE merge intermediates) leave the vocabulary; every corpus
    text keeps its segmentation, and every character stays (no <unk>)."""
    from stilts_mlflow.tokenizer import _xlmr_tokenizer, bpe_pieces, drop_unused

    docs, _ = corpus
    texts = [t for d in docs.values() for t in d]
    pieces = bpe_pieces(texts, 2000, world.alphabet())
    kept = drop_unused(pieces, texts)
    assert len(kept) < len(pieces)
    full, pruned = _xlmr_tokenizer(pieces), _xlmr_tokenizer(kept)
    assert [full.tokenize(t) for t in texts] == [pruned.tokenize(t) for t in texts]
    vocab = pruned.get_vocab()
    assert all(ch in vocab or "\u2581" + ch in vocab for ch in world.alphabet())
    assert all(pruned.unk_token_id not in pruned(t)["input_ids"] for t in texts)


def test_cli_describe_json_and_table():
    runner = CliRunner()
    result = runner.invoke(main, ["data", "describe", "--preset", "smoke", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["tasks"]["xnli"]["splits"]["dev"]["size"]["sw"] == 24
    assert info["tasks"]["squad"]["kind"] == "span_qa" and info["tasks"]["ccg"]["kind"] == "tagging"
    table = runner.invoke(main, ["data", "describe", "--preset", "smoke"])
    assert table.exit_code == 0 and "commonsenseqa" in table.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["data", "describe", "--preset", "huge"], "Invalid value for '--preset'"),
        (["data", "describe", "--source", "local"], "data source 'local' needs a data directory"),
    ],
)
def test_cli_bad_input_is_one_clear_line(args, message):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output


def test_cli_export_twice_identical(tmp_path):
    runner = CliRunner()
    for name in ("a", "b"):
        assert (
            runner.invoke(main, ["data", "export", "--preset", "smoke", "--out", str(tmp_path / name)]).exit_code == 0
        )
    for f in (tmp_path / "a").rglob("*.jsonl"):
        assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()


def test_names_and_readings_are_shared_tokens_in_every_language(corpus):
    """Names and numeric readings are the anchors that languages share: the same pieces in all 15,
    scripts without spaces (th, zh) included, wherever they stand in a document."""
    docs, tok = corpus
    english = {p for t in docs["en"] for p in tok.tokenize(t)}
    anchors = {p for p in english if p[1:].isdigit() or p[1:] in NAMES}
    assert sum(p[1:].isdigit() for p in anchors) >= 8 and sum(p[1:] in NAMES for p in anchors) >= 10
    for lang, texts in docs.items():
        pieces = [p for t in texts for p in tok.tokenize(t)]
        digits_or_names = {p for p in pieces if p.lstrip("▁").isdigit() or p.lstrip("▁") in NAMES}
        split = {p for p in digits_or_names if tok.tokenize(p.lstrip("▁")) != [p]}  # not the word's own piece
        assert not split, (lang, sorted(split)[:5])
        assert len(digits_or_names & anchors) >= 10, lang
