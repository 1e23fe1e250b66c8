"""Independent numpy re-derivations of the paper's batch-normalization formulas.

Algorithm 1 (forward) and the backward equations of Sec. 3 for the gradient with
respect to x_i, gamma and beta, written out term by term as in the paper.
"""

import numpy as np


def bn_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float):
  """Algorithm 1 over every axis but the last. Returns y, xhat, mu, sigma2 (biased)."""
  axes = tuple(range(x.ndim - 1))
  x = x.astype(np.float64)
  mu = x.mean(axis=axes)
  sigma2 = ((x - mu) ** 2).mean(axis=axes)
  xhat = (x - mu) / np.sqrt(sigma2 + eps)
  return gamma * xhat + beta, xhat, mu, sigma2


def bn_backward(dl_dy: np.ndarray, x: np.ndarray, gamma: np.ndarray, eps: float):
  """The paper's chain rule (Sec. 3). Returns dl/dx, dl/dgamma, dl/dbeta."""
  axes = tuple(range(x.ndim - 1))
  m = np.prod([x.shape[a] for a in axes])
  _, xhat, mu, sigma2 = bn_forward(x, gamma, np.zeros_like(gamma), eps)
  x = x.astype(np.float64)
  dl_dxhat = dl_dy * gamma
  dl_dsigma2 = np.sum(dl_dxhat * (x - mu), axis=axes) * -0.5 * (sigma2 + eps) ** -1.5
  dl_dmu = (
    np.sum(dl_dxhat * -1.0 / np.sqrt(sigma2 + eps), axis=axes)
    + dl_dsigma2 * np.sum(-2.0 * (x - mu), axis=axes) / m
  )
  dl_dx = dl_dxhat / np.sqrt(sigma2 + eps) + dl_dsigma2 * 2.0 * (x - mu) / m + dl_dmu / m
  dl_dgamma = np.sum(dl_dy * xhat, axis=axes)
  dl_dbeta = np.sum(dl_dy, axis=axes)
  return dl_dx, dl_dgamma, dl_dbeta
