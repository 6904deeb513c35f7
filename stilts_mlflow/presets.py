"""Presets: every number a run depends on, as frozen dataclasses.

`smoke` is for tests, `tiny` is the offline default, `xlmr-base` and `xlmr-large` follow the paper
(Phang et al. 2020, arXiv 2005.13013, Sec. 3 and App. A; jiant's STILTs/XTREME example configs):
intermediate batch 4 (large) / 8 (base), learning rate 1e-5, max length 512 for QA and 256
otherwise (we use 256 throughout on real presets), XNLI target 2 epochs, batch 4 x accumulation 8,
evaluation every 1000 steps, early stop after 30 evaluations without improvement.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any


NOT_IN_KEY = {"key": False}  # field metadata: a planning assumption, which no result depends on


def key_fields(obj: Any) -> Any:
    """A config dataclass as a key sees it: the fields that differ from their defaults, nested configs
    likewise. A field added later with a default leaves every existing key (and cached run) valid; fields
    marked NOT_IN_KEY (assumptions for planning) never enter it."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return obj
    out = {}
    for f in dataclasses.fields(obj):
        if f.metadata.get("key", True) is False:
            continue
        value = getattr(obj, f.name)
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        )
        if value != default:
            out[f.name] = key_fields(value)
    return out


MLM_SOFTMAX: tuple[str, ...] = ("full", "language")
LANGUAGE_SHARES: tuple[str, ...] = ("uniform", "cc100")


@dataclass(frozen=True)
class DataConfig:
    source: str = "synthetic"  # synthetic | hub | local
    world_seed: int = 0
    mlm_docs_per_lang: int = 3000  # MLM training documents per language (the mean, with language_shares cc100)
    # "uniform": every language the same; "cc100": XLM-R's shares of CC-100 after alpha = 0.3 smoothing
    # (Conneau et al. 2020), which leave Swahili and Urdu the least data
    language_shares: str = "uniform"
    task_train: int = 3000  # per intermediate task
    task_eval: int = 300  # dev and test per intermediate task
    xnli_train: int = 6000  # English
    xnli_dev: int = 300  # per language
    xnli_test: int = 600  # per language
    tokenizer: str = "train"  # "train" (SentencePiece unigram on the corpus) or a hub name / directory
    vocab_size: int = 8000
    local_dir: str | None = None  # source=local: DIR/<task>/<split>[.<lang>].jsonl
    hub_mirror: str | None = None  # source=hub: read save_to_disk copies under this dir instead of the hub

    def __post_init__(self):
        if self.language_shares not in LANGUAGE_SHARES:
            raise ValueError(
                f"language_shares must be one of {', '.join(LANGUAGE_SHARES)}; got {self.language_shares!r}"
            )


@dataclass(frozen=True)
class ModelConfig:
    init: str = "random"  # random (offline presets pretrain it) | pretrained (from_pretrained)
    pretrained: str | None = None  # hub name or directory of an XLMRobertaForMaskedLM
    # offline presets: the shipped encoder this recipe made (published.py); pipelines start from it unless
    # asked to pretrain (`--pretrain train`)
    published: str | None = None
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    max_length: int = 128
    dropout: float = 0.1


@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float = 5e-4
    batch_size: int = 32
    grad_accum: int = 1
    steps: int = 1000  # fixed budget; per-task budget multiplies by the number of tasks
    epochs: float = 0.0  # if > 0, overrides steps with epochs over the training data
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    eval_every: int = 200
    patience: int = 0  # evaluations without improvement before stopping (0: never)
    min_steps: int = 0  # early stopping only from this step on (a plateau before it is no reason to stop)
    # An evaluation counts as an improvement for early stopping only if it beats the best score by more than
    # this (HF EarlyStoppingCallback's early_stopping_threshold); the best checkpoint is still the best score.
    min_delta: float = 0.0
    stop_above: float = 0.0  # ... and only once the best dev score has passed this (a run still at chance is
    # on a plateau, not done: it trains on to the end of its schedule)
    checkpoint_every: int = 200
    # Keep the word embeddings as pretraining left them (Wu & Dredze 2019, "Beto, Bentz, Becas", Sec. 5:
    # freezing the lowest layers helps zero-shot transfer); only English words get gradients otherwise.
    freeze_embeddings: bool = False
    # ... and the lowest encoder layers, whose states are the most alike across languages (fine-tuning only)
    freeze_layers: int = 0
    mlm_probability: float = 0.15  # share of tokens masked in MLM batches (BERT's 15%; 30% learns faster here)
    # MLM softmax over the whole vocabulary ("full", as XLM-R) or over the document language's own tokens
    # ("language", mlm.py): no reward for keeping the languages apart, and a fraction of the output layer's work.
    mlm_softmax: str = "full"
    # Intermediate only: share of the steps spent on continued multilingual MLM over the pretraining corpus,
    # the tasks sharing the rest by the sampler (Phang et al. 2020, Sec. 6: "continuing multilingual MLM
    # during intermediate-task training"). 0: off, the paper's main recipe.
    mlm_share: float = 0.0
    # Target only: when an attempt's best dev score stays below `stop_above` (it never left the plateau), train
    # again from the same encoder with another seed (data order, head initialisation), up to `restarts` times, and
    # keep the best attempt by dev score: the random restarts of Devlin et al. 2019 (BERT, Sec. 4.1: fine-tuning
    # "was sometimes unstable ... so we ran several random restarts and selected the best model on the Dev set").
    restarts: int = 0
    # Target only, with `restarts`: an attempt whose best dev score is still below `stop_above` at this step ends
    # there and the next attempt starts; the last attempt runs its whole schedule. A run that has not left its
    # plateau by then rarely does, and one that leaves it late ends undertrained. 0: off.
    restart_at: int = 0
    # Gaussian noise added to the word embeddings in every training step (never at evaluation), its standard
    # deviation this multiple of the embedding matrix's: the classifier cannot key on the fine detail of English
    # word vectors, only on what other languages' aligned words share with them (noisy-embedding fine-tuning:
    # R3F, Aghajanyan et al. 2021, which lifts XNLI zero-shot; NEFTune, Jain et al. 2023). 0: off.
    embedding_noise: float = 0.0
    # Decay of an exponential moving average of the weights, updated every optimizer step; the average is what
    # dev evaluation scores and the phase keeps (averaging.py; Schmidt et al. 2023: steadier, better zero-shot
    # transfer). 0: off, the raw weights.
    weight_average: float = 0.0
    # Target only: share of each English pair's word types swapped for their mutual nearest neighbour among one
    # other language's tokens in the encoder's own embedding space (neighbours.py; needs the MLM corpus, which
    # says which tokens each language uses). 0: off, English only.
    neighbour_swap: float = 0.0
    # Target only: each training pair's words move by up to this many places within their sentence (Lample et al.
    # 2018's word shuffle, word_shuffle.py), so the classifier cannot rely on English word order. 0: off.
    word_shuffle: float = 0.0
    # The augmentations above (neighbour swaps, word shuffle) start only once the best dev score has reached this
    # (0: from the first step). The phase then goes on as a second stage: early stopping forgets the English-only
    # best, so the weights kept have seen them, and the attempt no longer gives up (`restart_at`).
    augment_from: float = 0.0

    @property
    def augments(self) -> bool:
        """Whether training batches get the target augmentations (neighbour swaps, word shuffle)."""
        return self.neighbour_swap > 0 or self.word_shuffle > 0

    def __post_init__(self):
        if self.word_shuffle < 0:
            raise ValueError(f"word_shuffle must be >= 0; got {self.word_shuffle}")
        if not 0 <= self.neighbour_swap <= 1:
            raise ValueError(f"neighbour_swap must be in [0, 1]; got {self.neighbour_swap}")
        if not 0 <= self.weight_average < 1:
            raise ValueError(f"weight_average must be in [0, 1); got {self.weight_average}")
        if self.restart_at < 0:
            raise ValueError(f"restart_at must be >= 0; got {self.restart_at}")
        if self.embedding_noise < 0:
            raise ValueError(f"embedding_noise must be >= 0; got {self.embedding_noise}")
        if self.min_delta < 0:
            raise ValueError(f"min_delta must be >= 0; got {self.min_delta}")
        if self.mlm_softmax not in MLM_SOFTMAX:
            raise ValueError(f"mlm_softmax must be one of {', '.join(MLM_SOFTMAX)}; got {self.mlm_softmax!r}")


@dataclass(frozen=True)
class Throughput:
    """Assumed training speed of a preset's encoder on each GPU type, for the study planner (`stilts scaling
    --plan`): tokens/s of forward + backward at full occupancy, plus a fixed cost per micro-batch (kernel
    launches, the optimizer step) that dominates at the paper's batch of 4. Evaluation runs forward only, at
    `eval_speedup` times the training rate. Assumptions, not measurements: `--tokens-per-second` overrides."""

    gpu: str  # the default GPU type
    tokens_per_second: dict[str, float]
    batch_overhead_s: float
    eval_speedup: float = 3.0  # forward only: 2N of the 6N FLOPs per token
    basis: str = ""

    def __post_init__(self):
        if self.gpu not in self.tokens_per_second:
            raise ValueError(f"throughput gpu {self.gpu!r} has no tokens_per_second entry")


@dataclass(frozen=True)
class Resources:
    """What one child pipeline of a preset asks of a cluster node (the ray backend's task request; the
    Kubernetes job template states its own). Not part of any key: where a pipeline runs does not change it."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_gb: float = 2.0

    def __post_init__(self):
        if self.cpus <= 0 or self.gpus < 0 or self.memory_gb <= 0:
            raise ValueError(f"a resource request needs cpus > 0, gpus >= 0 and memory_gb > 0; got {self}")

    def describe(self) -> str:
        return f"{self.cpus:g} CPU, {self.gpus:g} GPU, {self.memory_gb:g} GiB memory"


@dataclass(frozen=True)
class Preset:
    name: str
    data: DataConfig
    model: ModelConfig
    pretrain: TrainConfig | None  # None: the encoder is already pretrained (XLM-R)
    intermediate: TrainConfig
    target: TrainConfig
    description: str = ""
    extra: dict = field(default_factory=dict)
    throughput: Throughput | None = field(default=None, metadata=NOT_IN_KEY)  # GPU presets: planning assumptions
    # one child pipeline's request of a cluster node (ray backend): smoke and tiny train on one core in a few
    # hundred MB; XLM-R base fits one 16 GB GPU at batch 8, large a 40-80 GB one at batch 4
    resources: Resources = field(default_factory=Resources, metadata=NOT_IN_KEY)


_TINY = Preset(
    name="tiny",
    description="offline default: synthetic world, the published tiny XLM-R stilts-mini-xlmr, 2-CPU friendly",
    # 6,500 BPE merges (~4,000 pieces in use) keep nearly every word whole (1.01 pieces per word) while
    # inflected forms share their stem's piece ("limpi a", "чист ую"), as XLM-R's vocabulary splits real
    # morphology. XLM-R's CC-100 language shares (alpha 0.3) give Swahili and Urdu the least text.
    # docs/miniature.md has the probes behind every choice here.
    data=DataConfig(vocab_size=6500, language_shares="cc100"),
    # Small but deep (K et al. 2020: depth matters most for cross-lingual ability); no dropout.
    model=ModelConfig(
        hidden_size=64,
        num_layers=4,
        num_heads=2,
        intermediate_size=256,
        max_length=128,
        dropout=0.0,
        published="stilts-mini-xlmr",
    ),
    # Pretrained once and shipped: pipelines start from stilts_mlflow/encoders/stilts-mini-xlmr; `--pretrain train`
    # reruns this. 12,000 steps: long enough for the languages to align (multilinguality appears after the MLM loss
    # plateaus; Dufter & Schuetze 2020), short enough to keep it: a 36,000-step schedule kept less than half the
    # transfer (docs/miniature.md).
    pretrain=TrainConfig(
        learning_rate=2e-3,
        batch_size=64,
        steps=12000,
        eval_every=3000,
        checkpoint_every=1000,
        mlm_probability=0.3,
        mlm_softmax="language",
    ),
    # Intermediate: a fifth of the steps keep up multilingual MLM (Phang et al. 2020, Sec. 6), which keeps the
    # target phase from starting on a collapsed encoder.
    intermediate=TrainConfig(
        learning_rate=5e-4,
        batch_size=32,
        steps=400,
        eval_every=200,
        checkpoint_every=200,
        freeze_embeddings=True,
        mlm_share=0.2,
        mlm_probability=0.3,
        mlm_softmax="language",
    ),
    # Target: English NLI on frozen word embeddings (Wu & Dredze 2019). Frozen lower layers transferred better at
    # k = 0 but kept runs after intermediate tasks on the plateau (docs/miniature.md). The target phase sits on a
    # plateau (loss ln 3) until the encoder finds the comparison
    # of the two property words, a matter of seeds; many runs then pause on a second plateau at 2/3 (two of the
    # three labels). Early stopping only counts once English dev has passed 0.7 (`stop_above`: past both
    # plateaus), an evaluation is progress only above `min_delta`, and a run still below 0.7 at the end of its
    # schedule restarts with another seed (Devlin et al. 2019, Sec. 4.1), twice at most. Noise on the word embeddings
    # (0.65 of their standard deviation) keeps the classifier off detail that only the English words have, which
    # other languages' aligned words lack (docs/miniature.md, "Where the transfer was lost"); a moving average of
    # the weights (a 200-step horizon) is what dev scores and the phase keeps, steadier across seeds. Once English
    # dev has passed 0.7, 30% of each pair's word types become their mutual nearest neighbour in another language
    # (`neighbour_swap`, `augment_from`): the task is found in English first, then read in the other
    # languages' vectors. Swaps from the first step kept many runs on their plateaus (docs/miniature.md).
    target=TrainConfig(
        learning_rate=1e-3,
        batch_size=64,
        steps=4000,
        warmup_ratio=0.1,
        eval_every=250,
        checkpoint_every=250,
        patience=1,
        min_steps=1000,
        min_delta=0.01,
        stop_above=0.7,
        freeze_embeddings=True,
        restarts=2,
        restart_at=2000,
        embedding_noise=0.65,
        weight_average=0.995,
        neighbour_swap=0.3,
        augment_from=0.7,
    ),
)

# Training tokens/s at 30% of each GPU's dense bf16 peak (A100 312, H100 SXM 989, L4 121 TFLOP/s) over
# 6 x the non-embedding parameters per token (XLM-R base 85M: 0.52 GFLOP; large 302M: 1.83 GFLOP); a micro-batch
# of 4-8 short sequences is launch-bound, hence the fixed cost per micro-batch.
_XLMR_BASE_SPEED = Throughput(
    gpu="A100-80GB",
    tokens_per_second={"A100-80GB": 180_000, "H100-SXM": 570_000, "L4": 70_000},
    batch_overhead_s=0.012,
    basis="30% of dense bf16 peak, 6 x 85M FLOPs per token",
)
_XLMR_LARGE_SPEED = Throughput(
    gpu="A100-80GB",
    tokens_per_second={"A100-80GB": 51_000, "H100-SXM": 162_000, "L4": 20_000},
    batch_overhead_s=0.025,
    basis="30% of dense bf16 peak, 6 x 302M FLOPs per token",
)

_XLMR_BASE = Preset(
    name="xlmr-base",
    description="XLM-R base from the hub, real datasets (needs a hub mirror here)",
    data=DataConfig(
        source="hub",
        tokenizer="FacebookAI/xlm-roberta-base",
        task_train=0,
        task_eval=0,
        xnli_train=0,
        xnli_dev=0,
        xnli_test=0,
    ),
    model=ModelConfig(
        init="pretrained",
        pretrained="FacebookAI/xlm-roberta-base",
        hidden_size=768,
        num_layers=12,
        num_heads=12,
        intermediate_size=3072,
        max_length=256,
    ),
    pretrain=None,
    intermediate=TrainConfig(
        learning_rate=1e-5,
        batch_size=8,
        grad_accum=4,
        steps=0,
        epochs=3,
        eval_every=1000,
        patience=30,
        checkpoint_every=1000,
    ),
    target=TrainConfig(
        learning_rate=1e-5,
        batch_size=8,
        grad_accum=4,
        steps=0,
        epochs=2,
        eval_every=1000,
        patience=30,
        checkpoint_every=1000,
    ),
    throughput=_XLMR_BASE_SPEED,
    resources=Resources(cpus=4, gpus=1, memory_gb=16),
)

# smoke's intermediate and target phases: a dozen steps, frozen word embeddings as in tiny
_SMOKE_FINE_TUNE: dict[str, Any] = dict(
    batch_size=8, steps=12, eval_every=6, checkpoint_every=6, freeze_embeddings=True
)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        replace(
            _TINY,
            name="smoke",
            description="tests: whole pipeline in well under a minute",
            resources=Resources(cpus=1, gpus=0, memory_gb=1),
            data=DataConfig(
                mlm_docs_per_lang=120,
                task_train=96,
                task_eval=24,
                xnli_train=192,
                xnli_dev=24,
                xnli_test=24,
                vocab_size=1500,
            ),
            model=ModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_length=96),
            pretrain=TrainConfig(
                learning_rate=1e-3, batch_size=16, steps=30, eval_every=15, checkpoint_every=10, mlm_softmax="language"
            ),
            intermediate=TrainConfig(**_SMOKE_FINE_TUNE, mlm_share=0.2, mlm_softmax="language"),
            # a weight average over a 2-step horizon: tiny's 200-step one would outlast its 12 steps
            target=TrainConfig(**_SMOKE_FINE_TUNE, embedding_noise=0.65, weight_average=0.5),
        ),
        _TINY,
        _XLMR_BASE,
        replace(
            _XLMR_BASE,
            name="xlmr-large",
            description="the paper's recipe: XLM-R large, real datasets",
            data=replace(_XLMR_BASE.data, tokenizer="FacebookAI/xlm-roberta-large"),
            model=replace(
                _XLMR_BASE.model,
                pretrained="FacebookAI/xlm-roberta-large",
                hidden_size=1024,
                num_layers=24,
                num_heads=16,
                intermediate_size=4096,
            ),
            intermediate=replace(_XLMR_BASE.intermediate, batch_size=4, grad_accum=1),
            target=replace(_XLMR_BASE.target, batch_size=4, grad_accum=8),
            throughput=_XLMR_LARGE_SPEED,
            resources=Resources(cpus=8, gpus=1, memory_gb=32),
        ),
    )
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return PRESETS[name]
