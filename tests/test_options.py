"""Pipeline options (options.py): bad values are refused with the field named."""

import pytest

from stilts_mlflow.options import Options


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"preset": "huge"}, "unknown preset 'huge'; allowed: smoke, tiny, xlmr-base, xlmr-large"),
        ({"tasks": ("mnli", "boolq")}, "unknown intermediate task(s) boolq; allowed: anli, mnli"),
        ({"sampler": "uniform"}, "sampler must be one of proportional, temperature, capped"),
        ({"budget": "all"}, "budget must be one of fixed, per-task"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"sampler": "capped"}, "sampler=capped needs cap > 0"),
    ],
)
def test_options_reject_bad_values(bad, message):
    with pytest.raises(ValueError) as err:
        Options(**bad)
    assert message in str(err.value)
