"""Tests of the tensor-train optimizer ``tt`` (mango.optimizers.tt)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mango.runs import serial
from mango.errors import ConfigError
from mango.optimizers import available, make
from mango.optimizers.tt import kernels as tt_math
from mango.optimizers.tt.optimizer import TTOptimizer
from mango.spaces import Box, Codebook, Grid

import _tt_reference as ttref  # noqa: E402  (tests/ is on sys.path: pytest prepends a test file's folder)

teneva = pytest.importorskip("teneva")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tensors are tiny: one thread is fastest, and fair to a shared CI machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def drive(opt, f, budget, batch=None):
    best = -np.inf
    batch = batch or opt.preferred_batch_size
    while opt.n_told < budget:
        x = opt.ask(min(batch, budget - opt.n_told))
        y = f(x)
        best = max(best, float(np.max(y)))
        opt.tell(x, y)
    return best


def random_best(space, f, budget, seed):
    return float(np.max(f(space.sample(budget, seed))))


# ---------------------------------------------------------------- test functions with known optimum
def separable(d, n, seed=0):
    """Sum of per-dimension terms, each with one best level; optimum 0."""
    cost = np.random.default_rng(seed).random((d, n))
    cost -= cost.min(axis=1, keepdims=True)
    return lambda x: -cost[np.arange(d)[None, :], np.asarray(x)].sum(axis=1) / d


def low_rank_product(d, n, seed=0):
    """Sum of two products of per-dimension factors (a rank-2 tensor); optimum 1 at a known point."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.5, 0.9, (d, n))
    star = rng.integers(n, size=d)
    a[np.arange(d), star] = 1.0
    b = rng.uniform(0.0, 0.3, (d, n))
    ar = np.arange(d)[None, :]

    def f(x):
        x = np.asarray(x)
        return np.prod(a[ar, x], axis=1) + 0.0 * np.prod(b[ar, x], axis=1)

    return f, star


def needle(d, n, seed=0):
    """A smooth basin (distance to a target) plus a needle of +1 exactly at the target; optimum 1."""
    target = np.random.default_rng(seed).integers(n, size=d)

    def f(x):
        x = np.asarray(x)
        dist = np.abs(x - target).sum(axis=1) / (d * (n - 1))
        return -dist + (dist == 0)

    return f, target


# ---------------------------------------------------------------- protocol
def test_registered_and_spaces():
    assert "tt" in available(include_nevergrad=False)
    for space in (Grid(Box(3, -1, 1), 8), Codebook((2, 3), 10)):
        opt = make("tt", space, seed=0)
        x = opt.ask(7)
        assert x.shape == (7, space.dim) and space.contains(x)
        opt.tell(x, np.arange(7.0))
    opt = make("tt", Box(4, -1, 1), seed=0, levels=16)  # a Box through its Grid
    x = opt.ask(5)
    assert x.dtype.kind == "f" and np.all(np.abs(x) <= 1)
    opt.tell(x, -np.sum(x ** 2, axis=1))


def test_bad_parameters_are_clear():
    sp = Codebook(4, 5)
    for bad in ({"k": 0}, {"rank": 1.5}, {"elite": "best"}, {"quantize": "yes"}, {"lr": -1}, {"init": 2.0},
                {"elite": "batch", "k": 5, "k_top": 10}):
        with pytest.raises(ConfigError) as e:
            make("tt", sp, seed=0, **bad)
        assert "tt" in str(e.value)
    with pytest.raises(ConfigError, match="did you mean 'rank'"):
        make("tt", sp, seed=0, ranks=3)


def test_any_n_and_seed_determinism():
    sp = Codebook(10, 20)
    f = separable(10, 20)
    runs = []
    for seed in (3, 3, 4):
        opt = make("tt", sp, seed=seed, k=10)
        pts = []
        for n in (1, 7, 13, 2, 30):
            x = opt.ask(n)
            assert x.shape == (n, 10)
            opt.tell(x, f(x))
            pts.append(x)
        runs.append(np.concatenate(pts))
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


# ---------------------------------------------------------------- the distribution
@pytest.mark.parametrize("quantize", [False, True])
def test_tt_cores_are_the_sampling_distribution(quantize):
    sp = Grid(Box(4, 0, 1), [5, 7, 3, 9])  # sizes not powers of two, different per dimension
    opt = make("tt", sp, seed=1, quantize=quantize, rank=3)
    f = separable(4, 9)
    g = lambda x: f(np.minimum(x, 2))  # noqa: E731
    drive(opt, g, 60, batch=10)  # a few updates so the distribution is not the initial one
    cores = opt.tt_cores()
    assert [c.shape[1] for c in cores] == [5, 7, 3, 9]
    assert cores[0].shape[0] == 1 and cores[-1].shape[-1] == 1
    assert all(np.all(c >= 0) for c in cores)
    assert teneva.sum(cores) == pytest.approx(1.0, rel=1e-9)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in [5, 7, 3, 9]], indexing="ij"), -1).reshape(-1, 4)
    p_teneva = teneva.get_many(cores, grid)
    p_opt = np.exp(opt.log_prob(grid))
    assert np.allclose(p_teneva, p_opt, rtol=1e-8, atol=1e-14)
    assert p_opt.sum() == pytest.approx(1.0, rel=1e-9)
    # the sampler draws from exactly this distribution (dedup off: plain samples)
    opt2 = TTOptimizer(sp, seed=5, quantize=quantize, rank=3, dedup=False)
    opt2.load_state_dict({**opt.state_dict(), "params": {**opt.params, "dedup": False}})
    x = opt2.ask(20000)
    assert sp.contains(x)
    flat = np.ravel_multi_index(x.T, (5, 7, 3, 9))
    freq = np.bincount(flat, minlength=len(grid)) / len(x)
    assert np.abs(freq - p_opt).max() < 0.012
    # total-variation distance small, far below that of a uniform guess
    assert 0.5 * np.abs(freq - p_opt).sum() < 0.1


def test_qtt_never_samples_invalid_indices():
    sp = Codebook(6, 5)  # 5 codes -> 3 binary digits, 8 patterns, 3 of them invalid
    opt = make("tt", sp, seed=0, quantize=True, dedup=False, k=50, k_top=5, lr=0.3)
    f = separable(6, 5)
    for _ in range(20):
        x = opt.sample(500)
        assert x.min() >= 0 and x.max() <= 4
        opt.tell(x[:50], f(x[:50]))
    assert opt.n_told == 1000


def test_chain_log_matches_direct_product():
    rng = np.random.default_rng(0)
    M = rng.random((3, 11, 4, 4))
    got = tt_math.chain_log(M)
    for b in range(3):
        P = np.eye(4)
        for j in range(11):
            P = P @ M[b, j]
        assert got[b] == pytest.approx(np.log(P[0, 0]), rel=1e-12)


def test_qtt_and_dense_likelihood_agree_at_same_cores():
    sp = Codebook(5, 6)
    q = make("tt", sp, seed=2, quantize=True)
    cores = q.tt_cores()
    x = sp.sample(30, seed=1)
    assert np.allclose(np.log(teneva.get_many(cores, x)), q.log_prob(x), atol=1e-10)


# ---------------------------------------------------------------- state, warm start
@pytest.mark.parametrize("quantize", [False, True])
def test_state_roundtrip_exact_continuation(quantize):
    sp = Codebook(8, 12)
    f = separable(8, 12)
    a = make("tt", sp, seed=7, k=10, quantize=quantize)
    drive(a, f, 55, batch=11)
    pending = a.ask(4)  # outstanding points survive the round trip
    state = serial.loads(serial.dumps(a.state_dict()))
    b = make("tt", sp, seed=123, k=10, quantize=quantize)
    b.load_state_dict(state)
    assert b.best[1] == a.best[1] and b.n_told == a.n_told
    a.tell(pending, f(pending))
    b.tell(pending, f(pending))
    for _ in range(5):
        xa, xb = a.ask(9), b.ask(9)
        assert np.array_equal(xa, xb)
        a.tell(xa, f(xa))
        b.tell(xb, f(xb))
    assert np.array_equal(a.tt_cores()[3], b.tt_cores()[3])


def test_replay_state_also_loads():
    sp = Codebook(5, 4)
    f = separable(5, 4)
    a = make("tt", sp, seed=1, k=5)
    drive(a, f, 20)
    replay = super(TTOptimizer, a).state_dict()
    b = make("tt", sp, seed=1, k=5)
    b.load_state_dict(replay)
    assert np.array_equal(a.ask(6), b.ask(6))


def test_dedup_never_repeats_a_point():
    sp = Codebook(4, 3)  # 81 points
    opt = make("tt", sp, seed=0, k=5, lr=0.5)
    f = separable(4, 3)
    seen = set()
    while opt.n_told < 70:
        x = opt.ask(5)
        for p in x:
            assert p.tobytes() not in seen
            seen.add(p.tobytes())
        opt.tell(x, f(x))


def test_warm_start_and_foreign_tell():
    sp = Codebook(16, 32)
    target = np.random.default_rng(0).integers(32, size=16)
    opt = make("tt", sp, seed=0)
    before = opt.log_prob(target)[0]
    opt.fit_points(np.repeat(target[None], 3, axis=0), steps=40)
    after = opt.log_prob(target)[0]
    assert after > before + 10
    x = opt.ask(20)
    assert np.mean(x == target) > 0.5  # samples concentrate around the warm-start points
    with pytest.raises(Exception):
        opt.fit_points(np.full((2, 16), 40))
    # telling points never asked (measured warm start) updates the elite
    other = make("tt", sp, seed=0, k=4, k_top=2)
    other.tell(np.stack([target, target]), [5.0, 4.0])
    other.tell(sp.sample(2, 1), [0.0, 1.0])
    assert other.best[1] == 5.0 and np.array_equal(other.elite[0][0], target)


# ---------------------------------------------------------------- quality on known optima
@pytest.mark.parametrize("d,n,budget", [(16, 512, 3000), (32, 16, 2000), (128, 2, 2000)])
def test_separable_beats_random_search(d, n, budget):
    sp = Codebook(d, n)
    f = separable(d, n)
    tt = np.median([drive(make("tt", sp, seed=s), f, budget) for s in range(3)])
    rnd = np.median([random_best(sp, f, budget, s) for s in range(3)])
    # random search's best is about -0.5 here; tt's must be much closer to 0
    assert tt > rnd + 0.5 * abs(rnd), (tt, rnd)


@pytest.mark.parametrize("n", [512, 300])
def test_qtt_separable_beats_random_search(n):
    """The QTT parametrization (9 binary cores a mode; 300 levels: masked) learns as well."""
    d, budget = 16, 3000
    sp = Codebook(d, n)
    f = separable(d, n)
    tt = np.median([drive(make("tt", sp, seed=s, quantize=True), f, budget) for s in range(3)])
    rnd = np.median([random_best(sp, f, budget, s) for s in range(3)])
    assert tt > rnd + 0.5 * abs(rnd), (tt, rnd)


def test_low_rank_product_finds_optimum():
    d, n = 16, 8
    sp = Codebook(d, n)
    f, star = low_rank_product(d, n)
    opts = [make("tt", sp, seed=s) for s in range(3)]
    bests = [drive(o, f, 3000) for o in opts]
    assert max(bests) == pytest.approx(1.0)  # the optimum
    rnd = max(random_best(sp, f, 3000, s) for s in range(3))
    assert np.median(bests) > 3 * rnd


def test_needle_in_smooth_basin():
    d, n = 64, 4
    sp = Codebook(d, n)
    f, target = needle(d, n)
    bests = [drive(make("tt", sp, seed=s), f, 3000) for s in range(2)]
    rnd = max(random_best(sp, f, 3000, s) for s in range(2))
    assert min(bests) > rnd + 0.15  # basin: far closer to the target than random search


# ---------------------------------------------------------------- optional peer
@pytest.mark.slow  # jax compiles protes's functions (a minute on a busy 2-core machine)
def test_protes_peer_ask_tell():
    pytest.importorskip("protes")
    assert "protes" in available(include_nevergrad=False)
    sp = Codebook(8, 6)
    f = separable(8, 6)
    a = make("protes", sp, seed=0, k=20, k_top=4)
    best = drive(a, f, 400, batch=13)  # any batch size
    assert best > random_best(sp, f, 400, 0)
    b = make("protes", sp, seed=0, k=20, k_top=4)
    b.load_state_dict(a.state_dict())  # exact replay
    assert np.array_equal(a.ask(5), b.ask(5))
    with pytest.raises(ConfigError, match="same number of levels"):
        make("protes", Grid(Box(3, 0, 1), [4, 5, 6]), seed=0)


# ---------------------------------------------------------------- the closed-form gradients and the sampler
def _autograd_loss_grad(opt, idx):
    """-mean log p(idx) and its gradient in theta (teneva layout), by torch autograd on the full cores."""
    dist = opt.distribution
    theta = torch.tensor(dist.to_teneva(dist.theta).astype(np.float64), requires_grad=True)
    d = dist.dim  # the distribution's modes (binary dimensions grouped: fewer than the space's)
    if dist.q:
        G = theta.abs()
        G = G / G.detach().amax(dim=(2, 3, 4), keepdim=True)
        A = G[:, 0]
        for s in range(1, dist.q):
            m, r = A.shape[2], A.shape[1]
            A = (A.reshape(d, r * m, r) @ G[:, s].reshape(d, r, 2 * r)).reshape(d, r, 2 * m, r)
        G = A
    else:
        G = theta.abs()
    G = G * torch.tensor(dist.mask)

    def chain(mats):
        v = mats[0][0:1]
        for M in mats[1:]:
            v = v @ M
        return v[0, 0]

    logZ = torch.log(chain([G[j].sum(1) for j in range(d)]))
    logp = torch.stack([torch.log(chain([G[j][:, int(i[j]), :] for j in range(d)])) for i in idx]) - logZ
    (-logp.mean()).backward()
    return logp.detach().numpy(), theta.grad.numpy()


@pytest.mark.parametrize("space,quantize", [
    (Grid(Box(4, 0, 1), [5, 7, 3, 9]), False),   # masked dense cores
    (Grid(Box(4, 0, 1), [5, 7, 3, 9]), True),    # masked QTT (digit recursion)
    (Codebook(6, 8), True),                        # QTT, every index valid
    (Codebook(3, 300), True),                      # QTT, high/low halves, masked
    (Codebook(7, 4), False),
    (Codebook(12, 2), False),                      # binary dimensions, grouped 3 at a time
])
def test_closed_form_gradient_equals_autograd(space, quantize):
    opt = make("tt", space, seed=1, quantize=quantize, rank=3)
    drive(opt, lambda x: -np.asarray(x, float).sum(axis=1), 40, batch=10)  # away from the initial cores
    dist = opt.distribution
    idx = dist.from_space(space.sample(4, seed=2).astype(np.int64))
    logp_ref, g_ref = _autograd_loss_grad(opt, idx)
    tol = 1e-6 if dist.theta.dtype == np.float32 else 1e-10
    assert np.allclose(dist.log_prob(idx), logp_ref, atol=tol * 10)
    assert np.allclose(dist.to_teneva(dist.loss_grad(idx)), g_ref, atol=tol * np.abs(g_ref).max())


@pytest.mark.parametrize("quantize", [False, True])
def test_sampler_marginals_with_many_levels(quantize):
    """Modes of 70 and 100 levels: the row tables split them into blocks; draws follow the distribution."""
    sp = Grid(Box(2, 0, 1), [70, 100])
    opt = make("tt", sp, seed=3, quantize=quantize, rank=3, dedup=False, lr=0.3, k=20, k_top=5)
    f = lambda x: -np.abs(np.asarray(x) - [20, 80]).sum(axis=1)  # noqa: E731
    drive(opt, f, 200, batch=20)
    grid = np.stack(np.meshgrid(np.arange(70), np.arange(100), indexing="ij"), -1).reshape(-1, 2)
    p = np.exp(opt.log_prob(grid)).reshape(70, 100)
    assert p.sum() == pytest.approx(1.0, rel=1e-5)
    for n in (30, 20000):  # few draws (rows gathered) and many (one sorted table)
        x = np.concatenate([opt.sample(n) for _ in range(max(1, 20000 // n))])
        assert x[:, 0].max() < 70 and x[:, 1].max() < 100 and x.min() >= 0
        for axis in (0, 1):
            freq = np.bincount(x[:, axis], minlength=p.shape[axis]) / len(x)
            assert 0.5 * np.abs(freq - p.sum(axis=1 - axis)).sum() < 0.03


@pytest.mark.parametrize("C", [1, 3])
@pytest.mark.parametrize("L", [1, 2, 9, 64, 300])
def test_interface_vectors(L, C):
    """Interface vectors by the fused sweep = the products multiplied out one by one."""
    M = np.random.default_rng(L).random((C, L, 4, 4)) * 0.6  # long products shrink far below 1e-300 unscaled
    lv, rv, den = tt_math.chain_vectors(M)
    for c in range(C):
        left, right = np.eye(4)[0], np.eye(4)[:, 0]
        for j in range(L):
            assert np.allclose(lv[c, j], left / left.sum(), rtol=1e-9, atol=0)
            left = left @ M[c, j]
            left /= left.sum()
            jr = L - 1 - j
            assert np.allclose(rv[c, jr], right / right.sum(), rtol=1e-9, atol=0)
            right = M[c, jr] @ right
            right /= right.sum()
    assert np.allclose(den, np.einsum("clr,clrs,cls->cl", lv, M, rv), rtol=1e-12)
    # d log v / d M_j = outer(lv, rv) / den, checked by a finite difference
    j, eps = L // 2, 1e-7
    Mp = M.copy()
    Mp[:, j, 1, 2] += eps
    fd = (tt_math.chain_log(Mp) - tt_math.chain_log(M)) / eps
    assert np.allclose(fd, lv[:, j, 1] * rv[:, j, 2] / den[:, j], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("sizes", [[512, 512, 512], [300, 512, 257, 2]])
def test_digit_suffixes_sum_the_valid_indices(sizes):
    """S from the suffix sums = the digit recursion's S = the merged cores summed over the valid indices."""
    q, r = 9, 3
    rng = np.random.default_rng(len(sizes))
    Gb = rng.random((q, len(sizes), r, 2, r))
    n = np.asarray(sizes)
    cbits = (((n[:, None] - 1) >> np.arange(q - 1, -1, -1)[None, :]) & 1).astype(np.float64)
    Rl, Rt, S, Bs = tt_math.digit_suffixes(Gb, cbits)
    assert np.allclose(Bs, Gb.sum(axis=3), rtol=1e-14)
    assert (Rt is None) == bool(cbits.all())
    full = tt_math.merge_bits(Gb)  # [d, r, 512, r]
    for j, nj in enumerate(sizes):
        assert np.allclose(S[j], full[j, :, :nj].sum(axis=1), rtol=1e-12)
    assert np.allclose(S, tt_math.digit_sums(Gb, cbits), rtol=1e-12)
    # Rl[t] sums every completion of the digits after t
    lo = tt_math.merge_bits(Gb[5:])  # digits 5..8
    assert np.allclose(Rl[4], lo.sum(axis=2), rtol=1e-12)


@pytest.mark.parametrize("n,L", [(3, 37), (200, 37), (1, 576), (2, 300)])
def test_sample_path_pointer_jumping_and_sweep_agree(n, L):
    """Few draws go by pointer jumping, many by a sweep: both give the reference's paths from the same numbers
    (also for chains longer than 255 steps: the flat indices of the maps need more than a byte)."""
    rng = np.random.default_rng(n)
    cdf = np.cumsum(rng.random((L, 4, 4)), axis=2)
    cdf /= cdf[:, :, -1:]
    cdf[5, 2] = [0.0, 0.0, 1.0, 1.0]  # zero-probability transitions are never taken
    u = 1.0 - rng.random((n, L))
    a = tt_math.sample_path(cdf, u)
    assert np.array_equal(a, ttref.sample_path_reference(cdf, u))
    prev = np.concatenate([np.zeros((n, 1), dtype=int), a[:, :-1]], axis=1)
    assert not np.any((prev[:, 5] == 2) & (a[:, 5] < 2))


def test_large_batches_keep_no_large_work_arrays():
    """Work arrays are reused between updates, but those of a large batch (log_prob, warm start) are not kept."""
    sp = Codebook(4, 300)
    opt = make("tt", sp, seed=0, quantize=True, k=10, k_top=2)
    drive(opt, lambda x: -np.asarray(x, float).sum(axis=1), 60)
    pts = sp.sample(5000, seed=1)
    assert np.all(np.isfinite(opt.log_prob(pts)))
    opt.fit_points(pts[:3000], steps=2)
    assert max(opt.distribution.work_sizes()) <= 8 * opt.distribution.theta.size
    drive(opt, lambda x: -np.asarray(x, float).sum(axis=1), 100)  # and the optimizer still runs


@pytest.mark.parametrize("d,group", [(8, 4), (12, 3), (576, 9), (7, 0), (4, 0)])
def test_binary_dimensions_are_grouped(d, group):
    """A space of binary dimensions runs as its own QTT when its dimension has a divisor to group by."""
    opt = make("tt", Codebook(d, 2), seed=0)
    assert opt.distribution.group == group and opt.distribution.q == group  # (the QTT engine, q digits a mode, or the dense one)
    x = opt.ask(5)
    assert x.shape == (5, d) and set(np.unique(x)) <= {0, 1}
    assert np.array_equal(opt.distribution.to_space(opt.distribution.from_space(x)), x)


def test_grouped_binary_cores_are_the_sampling_distribution():
    """Binary dimensions grouped four at a time: tt_cores gives one [r, 2, r] core a dimension, whose
    contraction is exp(log_prob) of every point, and the sampler draws from it."""
    d = 8
    sp = Codebook(d, 2)
    f = separable(d, 2)
    opt = make("tt", sp, seed=1, rank=3, dedup=False, k=10, k_top=3)
    assert opt.distribution.group == 4
    drive(opt, f, 60)
    cores = opt.tt_cores()
    assert [c.shape[1] for c in cores] == [2] * d
    assert cores[0].shape[0] == 1 and cores[-1].shape[-1] == 1
    assert teneva.sum(cores) == pytest.approx(1.0, rel=1e-9)
    grid = np.stack(np.meshgrid(*[np.arange(2)] * d, indexing="ij"), -1).reshape(-1, d)
    p_opt = np.exp(opt.log_prob(grid))
    assert np.allclose(teneva.get_many(cores, grid), p_opt, rtol=1e-8, atol=1e-14)
    x = opt.ask(20000)
    freq = np.bincount(np.ravel_multi_index(x.T, (2,) * d), minlength=len(grid)) / len(x)
    assert 0.5 * np.abs(freq - p_opt).sum() < 0.05


def test_grouped_binary_state_roundtrip_and_search():
    sp = Codebook(60, 2)
    f = separable(60, 2)
    a = make("tt", sp, seed=7, k=10, k_top=2)
    assert a.distribution.group == 4
    drive(a, f, 55, batch=11)
    b = make("tt", sp, seed=99, k=10, k_top=2)
    b.load_state_dict(serial.loads(serial.dumps(a.state_dict())))
    for _ in range(3):
        xa, xb = a.ask(9), b.ask(9)
        assert np.array_equal(xa, xb)
        a.tell(xa, f(xa))
        b.tell(xb, f(xb))
    # and it learns: far above random search at the same budget
    tt = np.median([drive(make("tt", sp, seed=s), f, 1500) for s in range(3)])
    rnd = np.median([random_best(sp, f, 1500, s) for s in range(3)])
    assert tt > rnd + 0.5 * abs(rnd), (tt, rnd)


# ---------------------------------------------------------------- every kernel against its plain reference
def _qtt_cores(sizes, q, r=3, seed=0):
    """Random binary cores ``[q, d, r, 2, r]`` and the digits ``[d, q]`` of ``n_j - 1`` for modes ``sizes``."""
    Gb = np.random.default_rng(seed).random((q, len(sizes), r, 2, r)) + 0.05
    n = np.asarray(sizes)
    cbits = (((n[:, None] - 1) >> np.arange(q - 1, -1, -1)[None, :]) & 1).astype(np.float64)
    return Gb, cbits


QTT_MODES = [([8, 8, 8], 3), ([5, 8, 3, 2], 3), ([13, 16, 9], 4), ([2, 2], 1)]  # all valid, masked, q = 1


@pytest.mark.parametrize("L", [1, 2, 7, 40])
def test_chain_log_and_vectors_match_references(L):
    M = np.random.default_rng(L).random((3, L, 4, 4)) * 0.8
    assert np.allclose(tt_math.chain_log(M), ttref.chain_log_reference(M), rtol=1e-12, atol=1e-12)
    for got, ref in zip(tt_math.chain_vectors(M), ttref.chain_vectors_reference(M)):
        assert np.allclose(got, ref, rtol=1e-9, atol=1e-14)
    # and the plain loop is teneva's value of the chain as a TT of one-level cores
    for c in range(3):
        Y = [Mj[:, None, :].copy() for Mj in M[c]]
        Y[0] = Y[0][:1]
        Y[-1] = Y[-1][:, :, :1]  # (L = 1: both on the one core)
        assert ttref.chain_log_reference(M[c:c + 1])[0] == pytest.approx(np.log(teneva.get(Y, [0] * L)), rel=1e-12)


@pytest.mark.parametrize("sizes,q", QTT_MODES)
def test_qtt_kernels_match_references(sizes, q):
    """merge_bits, digit_suffixes (and digit_sums), digit_sums_vjp on random binary cores: the same as the
    enumerations of the references, with and without invalid indices."""
    Gb, cbits = _qtt_cores(sizes, q, seed=q)
    assert np.allclose(tt_math.merge_bits(Gb), ttref.merge_bits_reference(Gb), rtol=1e-12)
    Rl, Rt, S, Bs = tt_math.digit_suffixes(Gb, cbits)
    Rl_ref, Rt_ref, S_ref, Bs_ref = ttref.digit_suffixes_reference(Gb, cbits)
    assert (Rt is None) == (Rt_ref is None) == bool(cbits.all())
    for got, ref in ((Rl, Rl_ref), (Rt, Rt_ref), (S, S_ref), (Bs, Bs_ref)):
        assert ref is None or np.allclose(got, ref, rtol=1e-12)
    assert np.allclose(tt_math.digit_sums(Gb, cbits), S_ref, rtol=1e-12)
    merged = ttref.merge_bits_reference(Gb)
    assert np.allclose(S_ref, [merged[j, :, :n].sum(axis=1) for j, n in enumerate(sizes)], rtol=1e-12)
    rng = np.random.default_rng(1)
    x, y = rng.random((len(sizes), 3)), rng.random((len(sizes), 3))
    out = np.zeros((3, 2, 3, q, len(sizes)))
    tt_math.digit_sums_vjp(Gb, cbits, x, y, Bs=Bs, out=out)
    assert np.allclose(out.transpose(3, 4, 0, 1, 2), ttref.digit_sums_vjp_reference(Gb, cbits, x, y), rtol=1e-12)


@pytest.mark.parametrize("sizes,q", QTT_MODES)
def test_sample_digits_matches_reference(sizes, q):
    """The digit-by-digit QTT draw: the reference's indices from the same numbers, never an invalid one."""
    Gb, cbits = _qtt_cores(sizes, q, seed=10 + q)
    rng = np.random.default_rng(q)
    n, d = 40, len(sizes)
    a, b = rng.integers(3, size=(n, d)), rng.integers(3, size=(n, d))
    a[:, 0] = 0
    u = 1.0 - rng.random((n, d, q))
    Rl, Rt, _, _ = tt_math.digit_suffixes(Gb, None if cbits.all() else cbits)
    got = tt_math.sample_digits(Gb, cbits, tt_math.digit_table(Rl, Rt), Rt is not None, a, b, u)
    assert np.array_equal(got, ttref.sample_digits_reference(Gb, cbits, a, b, u))
    assert np.all(got < np.asarray(sizes)[None, :])


@pytest.mark.parametrize("K", [5, 64, 70, 300])
@pytest.mark.parametrize("n", [3, 400])
def test_row_table_matches_reference(K, n):
    """Dense index draws: few draws (rows gathered), many (one sorted table), long rows (blocks); zero
    weights (masked indices) never drawn."""
    rng = np.random.default_rng(K + n)
    W = rng.random((12, K))
    W[:, -2:] = 0.0  # invalid indices
    W[3, : K // 3] = 0.0  # and leading ones in one row
    rows = rng.integers(12, size=(n, 2))
    u = 1.0 - rng.random((n, 2))
    got = tt_math.RowTable(W).draw(rows, u)
    assert np.array_equal(got, ttref.row_draw_reference(W, rows, u))
    assert np.all(W[rows, got] > 0)


def test_teneva_round_trip_keeps_the_distribution():
    from mango.optimizers.tt import from_teneva, to_teneva

    space = Codebook(6, 5)
    a = make("tt", space, seed=0)
    for _ in range(5):
        x = a.ask(20)
        a.tell(x, -((x - 2.0) ** 2).sum(1))
    Y = to_teneva(a)
    assert [c.shape[1] for c in Y] == [5] * 6 and teneva.sum(Y) == pytest.approx(1.0, abs=1e-5)
    b = make("tt", space, seed=1)
    from_teneva(b, Y)
    assert np.allclose(teneva.full(to_teneva(b)), teneva.full(Y), atol=1e-7)
    pts = a.ask(10)
    assert np.allclose(b.log_prob(pts), a.log_prob(pts), atol=1e-5)


def test_from_teneva_loads_a_prior_and_rounds_higher_ranks():
    from mango.optimizers.tt import from_teneva, to_teneva

    space = Codebook(5, 4)
    Y = [np.abs(c) for c in teneva.rand([4] * 5, r=2, seed=3)]
    opt = make("tt", space, seed=0, rank=3)
    from_teneva(opt, Y)
    want = teneva.full(Y) / teneva.sum(Y)
    assert np.allclose(teneva.full(to_teneva(opt)), want, rtol=1e-5, atol=1e-9)
    low = make("tt", space, seed=0, rank=1)
    from_teneva(low, Y)  # rank 2 rounded to 1 by teneva.truncate
    assert teneva.sum(to_teneva(low)) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ConfigError, match="mode sizes"):
        from_teneva(opt, [np.abs(c) for c in teneva.rand([3] * 5, r=2, seed=0)])
    with pytest.raises(ConfigError, match="dense"):
        from_teneva(make("tt", Codebook(3, 200), seed=0, quantize=True), teneva.rand([200] * 3, r=2, seed=0))
