"""Oracle throughput: naive snntorch time loop vs mango's SNNOracle.

Two networks, constant-current input (the image is the input at every step):

1. ``digits``  -- the zoo ``snn-digits`` architecture (conv 1->12 5x5, maxpool,
   LIF, conv 12->32 5x5, maxpool, LIF, linear 512->10, LIF; 1x28x28; T = its
   ``num_steps``).  The trained zoo weights are used when ``mango.zoo.load``
   provides them, otherwise the same architecture with seeded random weights.
2. ``paper``   -- a network the size of the paper's CIFAR-10 SNN (conv 3->200
   5x5, maxpool, LIF, conv 200->64 5x5, maxpool, LIF, linear 1600->100, LIF,
   linear 100->10, LIF; 3x32x32; T = 128), seeded random weights.

"naive" is the textbook snntorch evaluation loop: reset the neurons, then call
the whole single-step network (``init_hidden=True``) ``T`` times under
``torch.no_grad()`` and record the output spikes.  "mango" is
``SNNOracle(net, readout="count")`` reading all output units (it computes the
constant stateless prefix conv+pool once per batch).  The output spike counts
of the two are asserted identical on every batch.  For the digits net we also
time SNNOracle in loop mode on the zoo model itself (whose forward() hoists
conv1 out of its own time loop).

Run:  python benchmarks/oracle_throughput.py [--quick]
Writes benchmarks/results/oracle_throughput.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import snntorch as snn
import torch
import torch.nn as nn

from mango.oracles import SNNOracle, reset_snn

HERE = Path(__file__).resolve().parent


def naive_counts(net: nn.Module, x: torch.Tensor, num_steps: int) -> torch.Tensor:
    """The textbook snntorch loop: output spike counts [n, 10]."""
    with torch.no_grad():
        reset_snn(net)  # snntorch.utils.reset(net) for these flat Sequentials
        spk_rec = []
        for _ in range(num_steps):
            spk, mem = net(x)
            spk_rec.append(spk)
        return torch.stack(spk_rec).sum(0)


def naive_hidden_counts(net: nn.Sequential, x: torch.Tensor, num_steps: int, index: int, units) -> torch.Tensor:
    """Textbook loop recording a hidden layer: channel spike counts (mean over space) [n, len(units)]."""
    with torch.no_grad():
        reset_snn(net)
        acc = 0
        for _ in range(num_steps):
            h = x
            for i, m in enumerate(net):
                h = m(h)
                if i == index:
                    acc = acc + h[:, units].double().mean((2, 3))
        return acc


def bench_hidden(net, shape, num_steps, index, n_batches, batch, seed=1):
    """Reading a hidden unit: the oracle also stops each step after the target layer."""
    g = torch.Generator().manual_seed(seed)
    batches = [torch.rand((batch,) + shape, generator=g) for _ in range(n_batches)]
    units = list(range(8))
    oracle = SNNOracle(net, layer=str(index), unit=units, num_steps=num_steps, readout="count")
    oracle(batches[0][:1])
    t_naive, ref, t_mango, out = [], [], [], []
    for x in batches:  # interleaved, as in bench()
        t, r = timed(lambda x: naive_hidden_counts(net, x, num_steps, index, units).numpy(), [x])
        t_naive += t
        ref += r
        t, r = timed(oracle, [x])
        t_mango += t
        out += r
    for a, b in zip(ref, out):
        if not abs(a - b).max() < 1e-9:
            raise AssertionError("hidden-layer counts differ from the naive loop")
    n, m = batch / statistics.median(t_naive), batch / statistics.median(t_mango)
    print(f"  hidden  layer {index} ({type(net[index]).__name__}): naive {n:.2f} stimuli/s, SNNOracle {m:.2f} "
          f"stimuli/s, {m / n:.2f}x")
    return {"layer": str(index), "units": units, "naive_stimuli_per_s": n, "mango_stimuli_per_s": m,
            "speedup_vs_naive": m / n, "times_naive_s": t_naive, "times_mango_s": t_mango,
            "max_abs_diff": float(max(abs(a - b).max() for a, b in zip(ref, out)))}


def paper_net(seed: int = 0, beta: float = 0.9) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 200, 5), nn.MaxPool2d(2), snn.Leaky(beta=beta, init_hidden=True),
        nn.Conv2d(200, 64, 5), nn.MaxPool2d(2), snn.Leaky(beta=beta, init_hidden=True),
        nn.Flatten(), nn.Linear(1600, 100), snn.Leaky(beta=beta, init_hidden=True),
        nn.Linear(100, 10), snn.Leaky(beta=beta, init_hidden=True, output=True),
    )
    with torch.no_grad():  # random weights scaled so that every layer spikes
        net[0].weight.mul_(4.0)
        net[3].weight.mul_(6.0)
        net[7].weight.mul_(6.0)
        net[9].weight.mul_(6.0)
        net[9].bias.add_(0.2)
    return net.eval()


def digits_nets(seed: int = 0):
    """(zoo model, equivalent init_hidden Sequential with the same weights, source)."""
    from mango.zoo.models import SNNDigits

    zoo, source = None, "SNNDigits architecture, seeded random weights (mango.zoo.load unavailable)"
    try:
        import mango.zoo as zoo_pkg

        if hasattr(zoo_pkg, "load"):
            zoo = zoo_pkg.load("snn-digits", device="cpu")
            zoo = getattr(zoo, "model", zoo)
            if not isinstance(zoo, SNNDigits):
                zoo = None
            else:
                source = "mango.zoo.load('snn-digits') (trained weights)"
    except Exception as exc:  # noqa: BLE001 - fall back to the architecture
        source += f" [load failed: {type(exc).__name__}]"
        zoo = None
    if zoo is None:
        torch.manual_seed(seed)
        zoo = SNNDigits()
        with torch.no_grad():
            zoo.conv1.weight.mul_(3.0)
            zoo.conv2.weight.mul_(3.0)
            zoo.fc.weight.mul_(3.0)
    zoo = zoo.eval()
    beta = float(zoo.lif1.beta)
    seq = nn.Sequential(
        nn.Conv2d(1, 12, 5), nn.MaxPool2d(2), snn.Leaky(beta=beta, init_hidden=True),
        nn.Conv2d(12, 32, 5), nn.MaxPool2d(2), snn.Leaky(beta=beta, init_hidden=True),
        nn.Flatten(), nn.Linear(512, 10), snn.Leaky(beta=beta, init_hidden=True, output=True),
    )
    with torch.no_grad():
        for dst, src in ((seq[0], zoo.conv1), (seq[3], zoo.conv2), (seq[7], zoo.fc)):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
    return zoo, seq.eval(), source


def timed(fn, batches):
    times, outs = [], []
    for x in batches:
        t0 = time.perf_counter()
        outs.append(fn(x))
        times.append(time.perf_counter() - t0)
    return times, outs


def bench(name, net, shape, num_steps, n_batches, batch, extra=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    batches = [torch.rand((batch,) + shape, generator=g) for _ in range(n_batches)]
    oracle = SNNOracle(net, layer="output", unit=list(range(10)), num_steps=num_steps, readout="count")
    plain = SNNOracle(net, layer="output", unit=list(range(10)), num_steps=num_steps, readout="count",
                      shortcut=False)
    oracle(batches[0][:1])  # first-call check of the forward structure, outside the timing
    plain(batches[0][:1])
    naive_fn = lambda x: naive_counts(net, x, num_steps).double().numpy()  # noqa: E731
    naive_fn(batches[0][:1])  # warm-up
    rows = {}
    runs = [("naive snntorch loop", naive_fn), ("SNNOracle (prefix shortcut)", oracle),
            ("SNNOracle (shortcut=False)", plain)]
    if extra is not None:
        runs += extra
    # round-robin over methods for every batch, so that load from other processes hits all methods alike
    times = {label: [] for label, _ in runs}
    outs = {label: [] for label, _ in runs}
    for x in batches:
        for label, fn in runs:
            t0 = time.perf_counter()
            outs[label].append(fn(x))
            times[label].append(time.perf_counter() - t0)
    ref = outs["naive snntorch loop"]
    for label, _ in runs:
        for a, b in zip(ref, outs[label]):
            if not (a == b).all():
                raise AssertionError(f"{name}: {label} output spike counts differ from the naive loop")
        med = statistics.median(times[label])
        rows[label] = {"median_s_per_batch": med, "stimuli_per_s": batch / med, "times_s": times[label]}
        print(f"  {name:7s} {label:34s} {batch / med:9.2f} stimuli/s  (median {med:.3f} s / batch of {batch})")
    base = rows["naive snntorch loop"]["stimuli_per_s"]
    for r in rows.values():
        r["speedup_vs_naive"] = r["stimuli_per_s"] / base
    total_spikes = float(sum(o.sum() for o in ref))
    return {"rows": rows, "num_steps": num_steps, "batch": batch, "n_batches": n_batches,
            "input_shape": list(shape), "output_spikes_total": total_spikes, "prefix_modules": oracle.prefix,
            "outputs_identical": True}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer/smaller batches (smoke test)")
    ap.add_argument("--batches", type=int, default=None, help="timed batches per network (default 3, quick 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, for a fair shared box)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    nb = args.batches or (2 if args.quick else 3)
    results = {"torch": torch.__version__, "snntorch": snn.__version__, "threads": args.threads,
               "machine": platform.processor() or platform.machine(), "networks": {}}

    zoo, seq, source = digits_nets()
    T = int(zoo.num_steps)

    def zoo_loop(x, o=SNNOracle(zoo, layer="lif3", unit=list(range(10)), readout="count", mode="loop")):
        return o(x)

    print(f"digits SNN ({source}), T={T}")
    d = bench("digits", seq, (1, 28, 28), T, nb, 64 if not args.quick else 16,
              extra=[("SNNOracle loop mode on zoo model", zoo_loop)])
    d["source"] = source
    results["networks"]["digits"] = d

    print("paper-sized SNN (random weights), T=128")
    pnet = paper_net()
    p = bench("paper", pnet, (3, 32, 32), 128 if not args.quick else 16, nb, 16 if not args.quick else 4)
    p["hidden_unit"] = bench_hidden(pnet, (3, 32, 32), 128 if not args.quick else 16, 5, nb,
                                    16 if not args.quick else 4)
    results["networks"]["paper"] = p

    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "oracle_throughput.json").write_text(json.dumps(results, indent=2))
    lines = ["# Oracle throughput: naive snntorch loop vs mango SNNOracle", "",
             f"torch {results['torch']}, snntorch {results['snntorch']}, {args.threads} CPU thread(s). "
             "Output spike counts asserted identical to the naive loop on every batch.", ""]
    for key, title in (("digits", f"digits SNN — {source}"), ("paper", "paper-sized CIFAR-10 SNN (random weights)")):
        r = results["networks"][key]
        lines += [f"## {title}", "",
                  f"T = {r['num_steps']}, batch {r['batch']} x {r['n_batches']} batches, input {tuple(r['input_shape'])}, "
                  f"constant prefix = {r['prefix_modules']} modules, output spikes = {r['output_spikes_total']:.0f}", "",
                  "| method | stimuli/s | speed-up vs naive |", "|---|---:|---:|"]
        for label, row in r["rows"].items():
            lines.append(f"| {label} | {row['stimuli_per_s']:.2f} | {row['speedup_vs_naive']:.2f}x |")
        lines.append("")
        if "hidden_unit" in r:
            h = r["hidden_unit"]
            lines += [f"Reading hidden layer {h['layer']} (LIF2, channels 0-7, mean over space, counts): naive loop "
                      f"{h['naive_stimuli_per_s']:.2f} stimuli/s, SNNOracle {h['mango_stimuli_per_s']:.2f} "
                      f"stimuli/s = {h['speedup_vs_naive']:.2f}x (prefix once per batch + forward stopped after "
                      f"the target layer; max |diff| {h['max_abs_diff']:.1e}).", ""]
    (out / "oracle_throughput.md").write_text("\n".join(lines))
    print(f"wrote {out / 'oracle_throughput.json'} and .md")


if __name__ == "__main__":
    main()
