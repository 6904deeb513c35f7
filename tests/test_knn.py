"""knn-replace: masked positions show another language's nearest neighbour of the original token."""

import torch

from stilts_mlflow.knn import KnnReplacer
from stilts_mlflow.mlm import LanguageVocab

MASK = 11


def _vocab() -> LanguageVocab:
    # ids 0-3 special, 4-6 language 0 ("en"), 7-9 language 1 ("fr"), 10 shared by both (a name), 11 <mask>
    ids = [torch.tensor([0, 1, 2, 3, 4, 5, 6, 10, MASK]), torch.tensor([0, 1, 2, 3, 7, 8, 9, 10, MASK])]
    local = torch.full((2, 12), -100)
    for i, row in enumerate(ids):
        local[i, row] = torch.arange(len(row))
    return LanguageVocab(("en", "fr"), ids, local)


def _embeddings() -> torch.Tensor:
    emb = torch.randn(12, 8)
    emb[7:10] = emb[4:7] + 0.01 * torch.randn(3, 8)  # fr 7, 8, 9 translate en 4, 5, 6
    return emb


def test_the_table_holds_each_languages_nearest_token_never_a_special_or_mask():
    knn = KnnReplacer(_vocab(), MASK, rate=0.5)
    knn.refresh(_embeddings())
    assert knn.table[4:7, 1].tolist() == [7, 8, 9] and knn.table[7:10, 0].tolist() == [4, 5, 6]
    assert knn.table[10, 0] == 10 == knn.table[10, 1]
    assert not ((knn.table < 4) | (knn.table == MASK)).any()


def test_only_masked_positions_change_to_the_other_languages_neighbour_at_the_given_rate():
    knn = KnnReplacer(_vocab(), MASK, rate=0.4)
    knn.refresh(_embeddings())
    labels = torch.tensor([[4, 5, 6, -100] * 500])
    inputs = torch.tensor([[MASK, MASK, MASK, 6] * 500])
    inputs[0, :400] = torch.tensor([4, 5, 6, 6] * 100)  # predicted but kept (BERT's 10% "kept")
    out = knn.apply(inputs, labels, torch.tensor([0]), torch.Generator().manual_seed(0))
    changed = out != inputs
    assert not changed[labels == -100].any() and not changed[0, :400].any()
    assert set(out[changed].tolist()) == {7, 8, 9}
    assert (out[changed] - 3 == labels[changed]).all()  # each the translation of its own original
    assert abs(changed.sum().item() / (labels != -100).sum().item() - 0.4) < 0.05


def test_nothing_changes_before_the_first_refresh():
    inputs, labels = torch.tensor([[MASK, 4]]), torch.tensor([[5, -100]])
    assert torch.equal(KnnReplacer(_vocab(), MASK, 1.0).apply(inputs, labels, torch.tensor([0]), None), inputs)
