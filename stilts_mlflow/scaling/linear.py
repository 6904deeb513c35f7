"""Ordinary least squares on one fixed design matrix, for one response vector or thousands at once.

A study's design (which subsets at which k) is the same for every simulated study, so the fit is a matrix
product: the simulation fits a thousand studies in one call, with the same code that fits the real one.
Estimates are linear contrasts of the coefficients with t intervals. (For one response this is what statsmodels' OLS gives; tests check that it agrees.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Estimates:
    """Contrasts C·beta for a batch of fits: `est` and `se` have shape (batch, contrasts)."""

    est: np.ndarray
    se: np.ndarray
    df: int

    def interval(self, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        half = stats.t.ppf(0.5 + confidence / 2, self.df) * self.se if self.df > 0 else np.full_like(self.se, np.nan)
        return self.est - half, self.est + half

    @property
    def p(self) -> np.ndarray:
        """Two-sided p-values of est = 0 (nan where the standard error is 0 or there is no df)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            t = self.est / self.se
        return 2 * stats.t.sf(np.abs(t), self.df) if self.df > 0 else np.full_like(t, np.nan)


@dataclass(frozen=True)
class Fit:
    beta: np.ndarray  # (batch, p)
    s2: np.ndarray  # (batch,) residual variance
    resid: np.ndarray  # (batch, n)


@dataclass(frozen=True)
class LinearModel:
    X: np.ndarray  # (n, p), full column rank
    names: tuple[str, ...]
    xtx_inv: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        if np.linalg.matrix_rank(self.X) < self.X.shape[1]:
            raise ValueError(f"design matrix of {', '.join(self.names)} is not of full column rank")
        object.__setattr__(self, "xtx_inv", np.linalg.inv(self.X.T @ self.X))

    @property
    def df(self) -> int:
        return self.X.shape[0] - self.X.shape[1]

    def fit(self, y: np.ndarray) -> Fit:
        """y: (n,) or (batch, n)."""
        y = np.atleast_2d(y)
        beta = y @ (self.X @ self.xtx_inv)
        resid = y - beta @ self.X.T
        s2 = (resid**2).sum(axis=1) / self.df if self.df > 0 else np.zeros(len(y))
        return Fit(beta, s2, resid)

    def estimate(self, fit: Fit, contrasts: np.ndarray) -> Estimates:
        c = np.atleast_2d(contrasts)
        var = np.einsum("ij,jk,ik->i", c, self.xtx_inv, c)  # diag(C (X'X)^-1 C')
        return Estimates(fit.beta @ c.T, np.sqrt(fit.s2[:, None] * var[None, :]), self.df)

    def sandwich_se(self, contrasts: np.ndarray, variances: np.ndarray) -> np.ndarray:
        """Standard errors of C·beta when observation i has variance variances[i] (the design's, no data)."""
        c = np.atleast_2d(contrasts)
        a = c @ self.xtx_inv @ self.X.T  # (q, n)
        return np.sqrt((a**2) @ variances)
