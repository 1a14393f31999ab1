"""The linear readout of ``inception(backbone=...)``: exact leave-one-out ridge choice, Bayesian posterior."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from mango.errors import ConfigError
from mango.optimizers.inception.readout import LinearReadout


def _brute_loo(f, y, lam, f_sd):
    """Leave-one-out squared error of ridge ``lam`` with an unpenalized intercept, refit n times."""
    n, d = f.shape
    err = []
    for i in range(n):
        keep = np.arange(n) != i
        mu = f[keep].mean(0)
        z = (f[keep] - mu) / f_sd
        ym = y[keep].mean()
        w = np.linalg.solve(z.T @ z + lam * np.eye(d), z.T @ (y[keep] - ym))
        err.append((f[i] - mu) / f_sd @ w + ym - y[i])
    return float(np.mean(np.square(err)))


@settings(max_examples=12, deadline=None)
@given(n=st.integers(8, 40), d=st.integers(2, 60), seed=st.integers(0, 10_000))
def test_the_chosen_ridge_has_the_least_refit_leave_one_out_error(n, d, seed):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, d))
    y = f @ rng.normal(size=(d, 2)) + rng.normal(size=(n, 2))
    r = LinearReadout(ridges=[0.01, 1.0, 100.0]).fit(f, y)
    for j in range(2):
        t = (y[:, j] - y[:, j].mean()) / r.y_sd[j]
        brute = {lam: _brute_loo(f, t, lam, r.f_sd) for lam in r.s.mean() * np.array([0.01, 1.0, 100.0])}
        assert r.noise[j] == pytest.approx(brute[r.lam[j]], rel=1e-6, abs=1e-9)
        assert r.noise[j] <= min(brute.values()) * (1 + 1e-6) + 1e-12


def test_mean_and_std_are_the_bayesian_ridge_posterior():
    rng = np.random.default_rng(0)
    for n, d in [(30, 80), (120, 10)]:  # more features than points, and fewer
        f = rng.normal(size=(n, d))
        y = f @ rng.normal(size=(d, 3)) + rng.normal(size=(n, 3))
        r = LinearReadout().fit(f, y)
        fx = rng.normal(size=(7, d))
        mean, std = r.predict(torch.as_tensor(fx))
        z, zx = (f - r.f_mu) / r.f_sd, (fx - r.f_mu) / r.f_sd
        t = (y - r.y_mu) / r.y_sd
        for j in range(3):
            a = z.T @ z + r.lam[j] * np.eye(d)
            w = np.linalg.solve(a, z.T @ t[:, j])
            np.testing.assert_allclose(mean[:, j].numpy(), zx @ w, atol=1e-9)
            var = r.noise[j] * np.einsum("ij,ji->i", zx, np.linalg.solve(a, zx.T))
            np.testing.assert_allclose(std[:, j].numpy(), np.sqrt(var), atol=1e-9)
        # one target per row, and back to the responses' units
        m1, _ = r.predict(torch.as_tensor(fx[:3]), torch.tensor([2, 0, 1]))
        np.testing.assert_allclose(m1.numpy(), mean[[0, 1, 2], [2, 0, 1]].numpy())
        np.testing.assert_allclose(r.to_values(mean.numpy())[:, 1], mean[:, 1].numpy() * y[:, 1].std() + y[:, 1].mean())


def test_learns_a_linear_unit_and_is_unsure_off_the_data():
    rng = np.random.default_rng(1)
    f = np.zeros((200, 30))
    f[:, :20] = rng.normal(size=(200, 20))  # the data never move features 20-29
    y = f @ rng.normal(size=30) + 0.1 * rng.normal(size=200)
    r = LinearReadout().fit(f, y)
    test = rng.normal(size=(50, 30))
    test[:, 20:] = 0
    mean, std = r.predict(torch.as_tensor(test))
    pred = r.to_values(mean.numpy())[:, 0]
    truth = test @ np.linalg.lstsq(f, y, rcond=None)[0]
    assert np.corrcoef(pred, truth)[0, 1] > 0.99
    off = test.copy()
    off[:, 20:] = 3.0 * rng.normal(size=(50, 10))
    _, std_off = r.predict(torch.as_tensor(off))
    assert (std_off > 3 * std).all()  # directions no response constrained keep the prior's uncertainty


def test_too_few_responses_is_a_clear_error():
    with pytest.raises(ConfigError, match="at least 2"):
        LinearReadout().fit(np.zeros((1, 3)), np.zeros(1))
