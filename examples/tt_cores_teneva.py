"""Analyze what the tensor-train optimizer learned, with teneva.

Runs ``tt`` for 2,000 queries on a separable function over a 24 x 16 Codebook
(each position has one best code), exports the learned sampling distribution
as teneva TT cores, and asks teneva for: the total probability (1), the most
probable point (``teneva.optima_tt``), its probability (``teneva.get``), and the
marginal distribution of each position (contracting the other cores with
``teneva``'s ones-vectors via ``teneva.mul`` / ``teneva.sum``).

Last, it loads the cores into a fresh optimizer (``mango.optimizers.tt.from_teneva``).

Run:  python examples/tt_cores_teneva.py
"""

import numpy as np
import teneva

from mango.optimizers import make
from mango.spaces import Codebook

d, n = 24, 16
rng = np.random.default_rng(0)
cost = rng.random((d, n))
best_codes = cost.argmin(axis=1)


def objective(codes):
    return -cost[np.arange(d)[None, :], codes].sum(axis=1)


space = Codebook(d, n)
opt = make("tt", space, seed=0)
while opt.n_told < 2000:
    x = opt.ask(opt.preferred_batch_size)
    opt.tell(x, objective(x))
point, value = opt.best
print(f"best value found {value:.4f} (optimum {objective(best_codes[None])[0]:.4f})")

cores = opt.tt_cores()  # list of d arrays [r, n, r]: p(i) = teneva.get(cores, i)
print("cores:", [c.shape for c in cores[:3]], "...", "total probability:", round(teneva.sum(cores), 6))

i_min, p_min, i_max, p_max = teneva.optima_tt(cores)
print(f"most probable point has probability {p_max:.3g}; matches the optimum at "
      f"{np.sum(i_max == best_codes)}/{d} positions")
print("teneva.get(cores, most probable point) =", f"{teneva.get(cores, i_max):.3g}")

# marginal of position j: multiply the distribution by a one-hot mask at j and sum
marginals = np.zeros((d, n))
for j in range(d):
    for c in range(n):
        mask = [np.ones((1, n, 1)) for _ in range(d)]
        mask[j] = np.zeros((1, n, 1))
        mask[j][0, c, 0] = 1.0
        marginals[j, c] = teneva.sum(teneva.mul(cores, mask))
print("marginals sum to 1 per position:", np.allclose(marginals.sum(axis=1), 1.0, atol=1e-4))  # float32 cores
print("positions whose most likely code is the best code:", int(np.sum(marginals.argmax(1) == best_codes)), "/", d)
print("mean marginal probability of the best code:", round(float(marginals[np.arange(d), best_codes].mean()), 3))

# and back (mango.optimizers.tt.from_teneva): a fresh optimizer that starts from what this one learned
from mango.optimizers.tt import from_teneva  # noqa: E402

fresh = make("tt", space, seed=1)
from_teneva(fresh, cores)
print("a fresh optimizer loaded with the cores gives the most probable point the same log-probability:",
      bool(np.allclose(fresh.log_prob(i_max[None]), opt.log_prob(i_max[None]), atol=1e-4)))
