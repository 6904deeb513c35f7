"""stilts-mlflow: does English intermediate-task training keep improving zero-shot XNLI?"""

__version__ = "0.1.0"
