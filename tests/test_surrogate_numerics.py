"""``surrogate``'s numerics: the same model for ``a * f + b`` as for ``f``, the incumbent kept in the model at
any level of the values, and loud (typed, counted) failures instead of silent NaNs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mango
from mango.errors import NumericalError, NumericalWarning
from mango.generators import Generator
from mango.optimizers import make
from mango.optimizers.surrogate import gp as gplib
from mango.optimizers.surrogate.data import training_set
from mango.spaces import Box

DIM = 5
HISTORY = 820  # past max_points (800): the data selection is active


def _below_minus_one(x):
    """A smooth, multimodal function whose values all lie in about [-40, -2]."""
    z = np.asarray(x, float) - 0.3
    return -2.0 - np.sum(z ** 2, axis=1) - 2.0 * np.sum(1.0 - np.cos(2 * np.pi * z), axis=1)


def _history(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (n, DIM))
    return X, _below_minus_one(X)


def _recording_fit(monkeypatch) -> list:
    """Record every GP fit the optimizer makes: (features, values, model)."""
    calls = []
    real = gplib.fit

    def fit(X, y, *args, **kwargs):
        model = real(X, y, *args, **kwargs)
        calls.append((X.clone(), y.clone(), model))
        return model

    monkeypatch.setattr(gplib, "fit", fit)
    return calls


def _fast_surrogate(seed: int = 0):
    return make("surrogate", Box(DIM, -1.0, 1.0), seed=seed, batch_size=10, n_candidates=200, grad_steps=5)


# -- data selection ------------------------------------------------------------------------------------

def test_the_incumbent_stays_in_the_model_when_every_value_is_below_minus_one():
    X, y = _history(HISTORY)
    F = torch.as_tensor((X + 1.0) / 2.0)
    idx = training_set(F, y, F[0], 800)
    assert len(idx) == 800 and len(set(idx.tolist())) == 800
    best = np.argsort(-y, kind="stable")[:80]
    np.testing.assert_array_equal(idx[:80], best)  # the best tenth, best first: also the hyperparameters' rows
    # the old sentinel (-1 - y as a "distance") put these last for y < -1, so the best points fell out
    assert int(np.argmax(y)) == int(idx[0])


@pytest.mark.parametrize("scale,offset", [(1.0, 0.0), (3.0, -1e4), (1e-3, 5.0)])
def test_the_data_selection_reads_only_the_order_of_the_values(scale, offset):
    X, y = _history(900, seed=1)
    F = torch.as_tensor(X)
    np.testing.assert_array_equal(training_set(F, y, F[3], 800), training_set(F, scale * y + offset, F[3], 800))


def test_a_run_below_minus_one_keeps_its_incumbent_in_every_fit_past_800_points(monkeypatch):
    calls = _recording_fit(monkeypatch)
    opt = _fast_surrogate()
    X, y = _history(HISTORY)
    opt.warm_start(X, y)
    best_before = []
    for _ in range(3):
        best_before.append(opt.best[1])
        p = opt.ask(10)
        opt.tell(p, _below_minus_one(p))
    assert len(calls) == 3 and max(best_before) < -1
    for (_, yf, model), best in zip(calls, best_before):
        assert len(yf) == 800
        assert float(yf[0]) == best  # the incumbent, first: in the hyperparameters' rows too
        assert float(model.y[0]) == pytest.approx(float(model.y.max()))


# -- invariance to the response's offset and scale --------------------------------------------------------

@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=st.floats(min_value=1e-2, max_value=1e2), b=st.floats(min_value=-1e4, max_value=1e4))
def test_the_model_sees_the_same_problem_in_a_f_plus_b(monkeypatch, a, b):
    """At every refit past 800 points, on values all below -1: the same training points, standardized
    targets, hyperparameters and posterior mean at the next proposals for ``f`` and ``a * f + b``."""
    with monkeypatch.context() as mp:
        calls = _recording_fit(mp)
        opt_f, opt_g = _fast_surrogate(), _fast_surrogate()
        X, y = _history(HISTORY)
        opt_f.warm_start(X, y)
        opt_g.warm_start(X, a * y + b)
        for _ in range(3):
            p = opt_f.ask(10)
            q = opt_g.ask(10)
            (Xf, yf, mf), (Xg, yg, mg) = calls[-2], calls[-1]
            torch.testing.assert_close(Xf, Xg, rtol=0, atol=0)  # the same points, in the same order
            torch.testing.assert_close(mf.y, mg.y, rtol=1e-6, atol=1e-9)  # standardized targets
            np.testing.assert_allclose(mf.hypers, mg.hypers, rtol=1e-6, atol=1e-8)
            for pts in (p, q):
                feats = torch.as_tensor((pts + 1.0) / 2.0, dtype=torch.float64)
                np.testing.assert_allclose(a * mf.predict(feats)[0].numpy() + b, mg.predict(feats)[0].numpy(),
                                           rtol=1e-6, atol=1e-6 * a)
            # both are told the same points, so the next refit compares like with like
            opt_f.tell(p, _below_minus_one(p))
            opt_g.tell(p, a * _below_minus_one(p) + b)


def test_fit_standardizes_once_for_the_hyperparameters_and_the_prediction():
    X, y = _history(400, seed=3)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    model = gplib.fit(Xt, yt, fit_points=128)
    ys, m, s = gplib.standardize(yt)
    torch.testing.assert_close(model.y, ys)
    assert (model.y_mean, model.y_std) == (m, s)
    # the hyperparameters are fit on the first 128 rows in the units of all 400: spread the other rows ten times
    # wider and the first rows' values shrink in those units, and so does the fitted signal variance (a subset
    # standardized on its own, as before, would give the very same hyperparameters both times)
    y2 = yt.clone()
    y2[128:] = (y2[128:] - y2.mean()) * 10 + y2.mean()
    wide = gplib.fit(Xt, y2, fit_points=128)
    assert wide.log_sf2 < model.log_sf2 - 1.0


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_the_posterior_mean_read_off_the_fit_is_the_predicted_mean(noise):
    # GP.train_mean (no kernel evaluation) and GP.mean (no variance) are the mean predict() gives, in y's units;
    # the centre of the trust region is chosen by them
    X, y = _history(300, seed=5)
    y = y + noise * np.random.default_rng(0).standard_normal(len(y))
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y) * 7.0 - 40.0
    model = gplib.fit(Xt, yt)
    mu, _ = model.predict(Xt)
    torch.testing.assert_close(model.train_mean(), mu, rtol=1e-6, atol=1e-6 * float(yt.std()))
    Xs = Xt[:50] + 0.01
    torch.testing.assert_close(model.mean(Xs), model.predict(Xs)[0], rtol=1e-12, atol=1e-12)


# -- degenerate data -----------------------------------------------------------------------------------------

def test_constant_responses_and_duplicate_points_give_finite_proposals():
    space = Box(4, 0.0, 1.0)
    res = mango.maximize(lambda x: np.full(len(x), -3.0), space, optimizer="surrogate", budget=60, seed=0,
                         progress=False)
    assert np.isfinite(res.points).all() and res.n_queries == 60
    opt = make("surrogate", space, seed=1, batch_size=10)
    x = np.tile(np.array([[0.5, 0.5, 0.5, 0.5]]), (30, 1))  # one point, thirty times, different values
    opt.tell(x, np.linspace(-5, -4, 30))
    p = space.validate(opt.ask(10))
    assert np.isfinite(p).all()
    assert opt.diagnostics()["model_fallbacks"] == 0


class _NaNGenerator(Generator):
    """A user's generator that makes a NaN image where the second coordinate is positive."""

    name = "nan-where-y-positive"

    def __init__(self):
        self.space, self.device, self.output_shape = Box(2, -1.0, 1.0), torch.device("cpu"), (1, 4, 4)

    def _generate(self, points):
        z = torch.as_tensor(points, dtype=torch.float32)
        img = torch.sigmoid(z[:, :1, None, None].expand(-1, 1, 4, 4))
        return torch.where(z[:, 1:2, None, None] > 0, torch.full_like(img, float("nan")), img)


def test_nan_features_are_refused_with_the_generators_name():
    gen = _NaNGenerator()
    opt = make("surrogate", gen.space, seed=0, batch_size=4, n_init=2, acquisition="evolution")
    opt.connect(generator=gen)
    x = np.array([[0.1, -0.5], [0.2, -0.3], [0.3, 0.5], [-0.1, -0.2]])  # the third makes a NaN image
    opt.tell(x, np.array([1.0, 2.0, 3.0, 0.5]))
    with pytest.raises(NumericalError, match=r"_NaNGenerator.*non-finite values \(NaN or inf\) for 1 of 4"):
        opt.ask(4)


# -- numerical failures are typed, counted and warned about once -------------------------------------------

def test_a_cholesky_that_fails_at_every_jitter_raises_a_typed_error(monkeypatch):
    X, y = _history(50)
    monkeypatch.setattr(torch.linalg, "cholesky_ex",
                        lambda A: (torch.full_like(A, float("nan")), torch.tensor(1)))
    with pytest.raises(gplib.ModelFitError, match="not positive definite"):
        gplib.fit(torch.as_tensor(X), torch.as_tensor(y), steps=0)


def test_an_induced_cholesky_failure_falls_back_to_the_trust_region_and_is_counted(monkeypatch, tmp_path):
    real = torch.linalg.cholesky_ex
    state = {"fail": False}

    def cholesky_ex(A, *args, **kwargs):
        if state["fail"]:
            return torch.full_like(A, float("nan")), torch.tensor(1)
        return real(A, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "cholesky_ex", cholesky_ex)

    class FailAfter(mango.runs.loop.Callback):
        def on_batch(self, run, batch):
            state["fail"] = run.n_queries >= 30

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = mango.maximize(_below_minus_one, Box(DIM, -1.0, 1.0), optimizer="surrogate", budget=70, seed=0,
                             progress=False, callbacks=[FailAfter()], n_candidates=100, grad_steps=3)
    ours = [str(w.message) for w in caught if issubclass(w.category, NumericalWarning)]
    assert sum("drawn at random inside the trust region" in m for m in ours) == 1  # one warning, not one a batch
    assert all("drawn at random" in m or "hyperparameter fit failed from all 2 starts" in m for m in ours)
    assert res.n_queries == 70 and np.isfinite(res.values).all() and np.isfinite(res.points).all()
    assert res.optimizer_diagnostics["model_fallbacks"] == 4  # batches 4-7 (30..69)
    assert res.optimizer_diagnostics["hyper_fit_failures"] >= 8  # both starts of each failed fit
    from mango.runs.resultfile import result_record

    rec = result_record(res, target={})
    assert rec["search"]["diagnostics"]["model_fallbacks"] == 4
