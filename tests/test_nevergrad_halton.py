"""The memoized scrambled Halton/Hammersley sampling of nevergrad (mango.optimizers.nevergrad_opt)
gives exactly nevergrad's own samples, and makes ng:Portfolio on a VQ-VAE-sized Codebook fast."""

import time

import numpy as np
import pytest

from mango.optimizers import nevergrad_opt

seq = pytest.importorskip("nevergrad.optimization.sequences")


@pytest.mark.parametrize("cls_name,budget", [("HammersleySampler", 12), ("HaltonSampler", 12),
                                             ("HaltonSampler", None)])
def test_memoized_samples_equal_nevergrads(monkeypatch, cls_name, budget):
    nevergrad_opt._memoize_scrambled_halton()
    cls = getattr(seq, cls_name)
    monkeypatch.setattr(nevergrad_opt, "_HALTON_MEMO_DEFAULT_LEN", 9)  # no budget: fall back from sample 8 on
    n = budget if budget else 15
    dim = 40  # primes up to 173: sizes both below and above the kept prefix

    def samples(memo: bool):
        monkeypatch.setattr(nevergrad_opt, "_HALTON_MEMO_MIN_DIM", 0 if memo else 10**9)
        s = cls(dim, budget=budget, scrambling=True, random_state=np.random.RandomState(3))
        out = [np.asarray(s()) for _ in range(n)]
        assert ("_mango_perms" in s.__dict__) == memo
        return out

    a, b = samples(True), samples(False)
    assert len(a) == len(b) == n
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)  # bit-identical


def test_portfolio_on_vqvae_codebook_is_fast():
    from mango.optimizers import make
    from mango.spaces import Codebook

    space = Codebook((7, 7), 128)  # 6,272 softmax weights in nevergrad
    opt = make("ng:Portfolio", space, seed=1, budget=3000)
    t0 = time.perf_counter()
    for _ in range(9):  # three asks of each portfolio member, incl. ScrHammersleySearch
        x = opt.ask(1)
        assert x.shape == (1, 49) and x.min() >= 0 and x.max() < 128
        opt.tell(x, np.array([float(x.sum() % 7)]))
    # without the memo each of the 3 Hammersley asks costs ~3 s; with it only the first builds the memo
    assert time.perf_counter() - t0 < 20
