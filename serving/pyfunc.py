"""The `stilts-xnli-onnx` MLflow pyfunc, logged as code (MLflow "models from code": nothing is pickled).

Input: a DataFrame with `premise` and `hypothesis` string columns (any of the 15 languages).
Output: a DataFrame with `label` and one probability column per label. `params={"variant": "int8"}`
switches to the quantized graph.
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from serving.engine import NLIEngine

COLUMNS = ("premise", "hypothesis")


class OnnxNLIModel(PythonModel):
    def load_context(self, context) -> None:
        self.model_dir = context.artifacts["export"]
        self.engines = {"fp32": NLIEngine.load(self.model_dir, "fp32")}

    def _engine(self, variant: str) -> NLIEngine:
        if variant not in self.engines:
            self.engines[variant] = NLIEngine.load(self.model_dir, variant)
        return self.engines[variant]

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        missing = [c for c in COLUMNS if c not in model_input.columns]
        if missing:
            raise ValueError(f"input is missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
        for col in COLUMNS:
            bad = [i for i, x in enumerate(model_input[col]) if not isinstance(x, str) or not x.strip()]
            if bad:
                raise ValueError(f"column {col!r}: row {bad[0]} is not a non-empty string")
        engine = self._engine((params or {}).get("variant", "fp32"))
        rows = engine.predict(list(model_input["premise"]), list(model_input["hypothesis"]))
        return pd.DataFrame(
            [{"label": r["label"], **{f"p_{k}": v for k, v in r["probabilities"].items()}} for r in rows]
        )


mlflow.models.set_model(OnnxNLIModel())
