"""Request and response bodies, and the limits the server enforces on them."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class Limits:
    max_pairs: int = 64  # pairs per /v1/nli request
    max_labels: int = 16  # candidate labels per /v1/zero-shot request
    max_chars: int = 2000  # characters per text
    max_body_bytes: int = 256 * 1024


# strict: no coercion ("yes" is not a bool, 1 is not a string); extra fields are an error.
STRICT = ConfigDict(extra="forbid", strict=True)


class Pair(BaseModel):
    model_config = STRICT
    premise: str
    hypothesis: str


class NLIRequest(BaseModel):
    """Either one pair (`premise`, `hypothesis`) or `pairs`."""

    model_config = STRICT
    premise: str | None = None
    hypothesis: str | None = None
    pairs: list[Pair] | None = None


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float]


class NLIResponse(BaseModel):
    results: list[Prediction]


class ZeroShotRequest(BaseModel):
    model_config = STRICT
    text: str
    candidate_labels: list[str]
    hypothesis_template: str = Field(default="{}", description="Hypothesis per label; '{}' is replaced by the label.")
    multi_label: bool = Field(default=False, description="Score labels independently (entailment vs contradiction).")


class RankedLabel(BaseModel):
    label: str
    score: float


class ZeroShotResponse(BaseModel):
    text: str
    labels: list[RankedLabel]


class ErrorBody(BaseModel):
    """Every 4xx (and the rare 500): what is wrong, prefixed by the field it concerns."""

    error: str = Field(description="'<field>: what is wrong'")
    field: str | None = Field(description="The request field (dotted path), or body, path, method, a header.")


ERROR_RESPONSES = {
    status: {"model": ErrorBody, "description": what}
    for status, what in (
        (400, "Invalid JSON"),
        (404, "No such endpoint"),
        (405, "Method not allowed"),
        (408, "Body stalled"),
        (413, "Too many pairs or labels, or body over the limit"),
        (415, "Compressed body"),
        (422, "Missing, wrongly typed, empty or too long field"),
        (500, "Scoring failed"),
    )
}
