"""A compact conditional GAN that synthesises rare-disease patients on the feature matrix (PyTorch, CPU).

The generator maps noise and a learned disease embedding to the probability of every binary column (findings,
excluded findings, history, one-hot demographics); the discriminator sees a binary row and the disease
(projection discriminator). Generated probabilities are sampled to 0/1 with a straight-through estimator, so
the discriminator never tells real from fake by fractional values. A moment term pulls the generator's
probabilities towards the disease's mean row, which keeps diseases with three patients from collapsing.

It trains on the training fold's binary block (all diseases, batches drawn with weights ~ count^-1/2 so rare
diseases are seen; only the columns some rare patient has), then generates `target - n` rows for each
disease with n < target. Non-binary columns
(age, counts, knowledge scores) of a synthetic row are interpolated between two real patients of the disease.
Deterministic for a given `random_state` (and thread count); the networks are dropped after use.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from dxlab.augment import torch_threads
from dxlab.augment.samplers import append_rows, binary_columns, rows_needed

log = logging.getLogger(__name__)


def _networks(n_features: int, n_classes: int, noise_dim: int, embedding_dim: int, hidden: int, prior):
    import torch
    from torch import nn

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(n_classes, embedding_dim)
            self.body = nn.Sequential(nn.Linear(noise_dim + embedding_dim, hidden), nn.LeakyReLU(0.2),
                                      nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, n_features))
            # Start at the columns' base rates: the generator learns deviations, not sparsity itself.
            with torch.no_grad():
                self.body[-1].bias.copy_(prior)

        def forward(self, noise, label):
            return torch.sigmoid(self.body(torch.cat([noise, self.embedding(label)], dim=1)))

    class Discriminator(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(n_features, hidden), nn.LeakyReLU(0.2), nn.Dropout(0.2),
                                      nn.Linear(hidden, hidden), nn.LeakyReLU(0.2))
            self.out = nn.Linear(hidden, 1)
            self.embedding = nn.Embedding(n_classes, hidden)

        def forward(self, x, label):
            h = self.body(x)
            return self.out(h).squeeze(1) + (self.embedding(label) * h).sum(dim=1)

    return Generator(), Discriminator()


class ConditionalGANSampler(BaseEstimator):
    """`fit_resample(X, y)`: train the conditional GAN on X's binary columns, add rows for rare classes."""

    input = "features"

    def __init__(self, target: int = 10, epochs: int = 10, batch_size: int = 128, noise_dim: int = 32,
                 embedding_dim: int = 32, hidden: int = 128, lr: float = 2e-4, moment_weight: float = 1.0,
                 balanced_batches: bool = True, n_threads: int | None = 1, random_state: int | None = 0):
        self.target = target
        self.epochs = epochs
        self.batch_size = batch_size
        self.noise_dim = noise_dim
        self.embedding_dim = embedding_dim
        self.hidden = hidden
        self.lr = lr
        self.moment_weight = moment_weight
        self.balanced_batches = balanced_batches
        self.n_threads = n_threads
        self.random_state = random_state

    def fit_resample(self, X, y):
        import torch

        X = sparse.csr_matrix(X) if sparse.issparse(X) else np.asarray(X)
        y = np.asarray(y)
        need = rows_needed(y, self.target)
        self.rows_needed_ = need
        self.binary_columns_ = binary = binary_columns(X)
        if not need or not binary.any():
            self.n_synthetic_ = {}
            log.info("ConditionalGANSampler: nothing to generate (%d classes below target, %d binary columns)",
                     len(need), int(binary.sum()))
            return append_rows(X, [], y, [])
        rng = check_random_state(self.random_state)
        classes, y_index = np.unique(y, return_inverse=True)
        # Model the binary columns some rare patient has: the others would stay 0 for the rows generated here
        # anyway, and each dropped column saves generator output and discriminator input (CPU time).
        rare_rows = np.flatnonzero(np.isin(y, list(need)))
        active = np.asarray(abs(X[rare_rows]).sum(axis=0)).ravel() > 0
        self.modelled_columns_ = modelled = np.flatnonzero(binary & active)
        X_bin = sparse.csr_matrix(X[:, modelled], dtype=np.float32)
        with torch.random.fork_rng(devices=[]), torch_threads(self.n_threads):
            torch.manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
            generator = self._train(X_bin, y_index, len(classes), rng)
            blocks, labels = [], []
            for cls, n_new in need.items():
                c = int(np.searchsorted(classes, cls))
                with torch.no_grad():
                    noise = torch.randn(n_new, self.noise_dim)
                    proba = generator(noise, torch.full((n_new,), c, dtype=torch.long))
                    found = torch.bernoulli(proba).numpy()
                rows = np.zeros((n_new, X.shape[1]), dtype=np.float64)
                rows[:, modelled] = found
                rows[:, ~binary] = self._interpolate(X, np.flatnonzero(y == cls), ~binary, n_new, rng)
                blocks.append(rows)
                labels.append(np.full(n_new, cls, dtype=y.dtype))
        self.n_synthetic_ = {cls: int(n) for cls, n in need.items()}
        log.info("ConditionalGANSampler: +%d rows for %d classes below target %d (%d epochs, final losses "
                 "D %.3f G %.3f)", sum(need.values()), len(need), self.target, self.epochs,
                 self.history_[-1]["discriminator"], self.history_[-1]["generator"])
        return append_rows(X, blocks, y, labels)

    @staticmethod
    def _interpolate(X, own: np.ndarray, columns: np.ndarray, n: int, rng) -> np.ndarray:
        a, b = rng.choice(own, size=n), rng.choice(own, size=n)
        rows_a = X[a][:, columns]
        rows_b = X[b][:, columns]
        rows_a = rows_a.toarray() if sparse.issparse(rows_a) else rows_a
        rows_b = rows_b.toarray() if sparse.issparse(rows_b) else rows_b
        step = rng.uniform(size=(n, 1))
        return rows_a + step * (rows_b - rows_a)

    def _train(self, X_bin: sparse.csr_matrix, y_index: np.ndarray, n_classes: int, rng):
        import torch
        import torch.nn.functional as F

        n, d = X_bin.shape
        counts = np.bincount(y_index, minlength=n_classes).astype(float)
        share = np.clip(np.asarray(X_bin.mean(axis=0)).ravel(), 1e-4, 1 - 1e-4)
        prior = torch.tensor(np.log(share / (1 - share)), dtype=torch.float32)
        class_means = np.zeros((n_classes, d), dtype=np.float32)
        for c in range(n_classes):
            class_means[c] = np.asarray(X_bin[y_index == c].mean(axis=0)).ravel()
        class_means = torch.from_numpy(np.clip(class_means, 0.0, 1.0))
        generator, discriminator = _networks(d, n_classes, self.noise_dim, self.embedding_dim, self.hidden, prior)
        opt_g = torch.optim.Adam(generator.parameters(), lr=self.lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=self.lr, betas=(0.5, 0.999))
        weights = counts[y_index] ** -0.5 if self.balanced_batches else np.ones(n)
        weights /= weights.sum()
        self.history_ = []
        for _ in range(self.epochs):
            order = rng.choice(n, size=n, p=weights) if self.balanced_batches else rng.permutation(n)
            d_total = g_total = 0.0
            for start in range(0, n, self.batch_size):
                idx = order[start:start + self.batch_size]
                real = torch.from_numpy(X_bin[idx].toarray())
                label = torch.from_numpy(y_index[idx].astype(np.int64))
                noise = torch.randn(len(idx), self.noise_dim)
                proba = generator(noise, label)
                fake = torch.bernoulli(proba.detach()) + proba - proba.detach()  # straight-through 0/1
                d_loss = (F.softplus(-discriminator(real, label)).mean()
                          + F.softplus(discriminator(fake.detach(), label)).mean())
                opt_d.zero_grad()
                d_loss.backward()
                opt_d.step()
                g_loss = F.softplus(-discriminator(fake, label)).mean()
                if self.moment_weight:
                    g_loss = g_loss + self.moment_weight * F.binary_cross_entropy(proba, class_means[label])
                opt_g.zero_grad()
                g_loss.backward()
                opt_g.step()
                d_total += float(d_loss.detach()) * len(idx)
                g_total += float(g_loss.detach()) * len(idx)
            self.history_.append({"discriminator": d_total / n, "generator": g_total / n})
        generator.eval()
        return generator
