"""PyTorch classifiers as scikit-learn estimators: an MLP, and an MLP on a pretrained autoencoder's encoding.

Both take a dense or scipy-sparse feature matrix (batches are densified one at a time), stop early on a
stratified validation fold (a disease with a single patient stays in training), optionally weigh classes,
and are deterministic given random_state: training runs under a forked torch RNG seeded from it, with
deterministic algorithms and a fixed number of threads (the global torch settings are restored afterwards).
Fitted weights are kept as a CPU state dict, so the estimators pickle with joblib; prediction runs in float64,
which makes probabilities independent of the batch a row is predicted in.
"""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn
from torch.nn import functional as F

from dxlab.models.calibration import fit_temperature, stratified_holdout


@contextlib.contextmanager
def torch_session(seed: int, n_threads: int):
    """Seeded, deterministic, fixed-thread torch; the caller's RNG state and settings come back afterwards."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(max(1, int(n_threads)))
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(deterministic)
            torch.set_num_threads(threads)


def batch_rows(X, rows, dtype=torch.float32):
    """The rows as the first layer takes them: (indices, offsets, values) tensors for a sparse matrix (only the
    non-zero cells are multiplied), a dense tensor otherwise."""
    block = X[rows]
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    if sparse.issparse(block):
        block = block.tocsr()
        return (torch.from_numpy(block.indices.astype(np.int64)),
                torch.from_numpy(block.indptr[:-1].astype(np.int64)),
                torch.from_numpy(np.asarray(block.data, dtype=np_dtype)))
    return torch.from_numpy(np.ascontiguousarray(block, dtype=np_dtype))


def dense_rows(X, rows, dtype=torch.float32) -> torch.Tensor:
    block = X[rows]
    block = block.toarray() if sparse.issparse(block) else np.asarray(block)
    return torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32 if dtype == torch.float32 else np.float64))


class InputLinear(nn.Module):
    """A linear layer on dense or sparse rows; sparse ones go through embedding_bag (a weighted sum of the
    weight rows of the non-zero columns), so a batch costs its non-zeros, not n_features."""

    def __init__(self, n_features: int, n_out: int):
        super().__init__()
        bound = 1.0 / np.sqrt(max(n_features, 1))
        self.weight = nn.Parameter(torch.empty(n_features, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound))

    def forward(self, x) -> torch.Tensor:
        if isinstance(x, tuple):
            indices, offsets, values = x
            return F.embedding_bag(indices, self.weight, offsets, mode="sum", per_sample_weights=values,
                                   include_last_offset=False) + self.bias
        return x @ self.weight + self.bias


def mlp(sizes, dropout: float = 0.0, last_activation: bool = False) -> nn.Sequential:
    """Linear layers of the given sizes with ReLU (and dropout) between them; the first one also takes the
    (indices, offsets, values) of sparse rows."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(InputLinear(n_in, n_out) if i == 0 else nn.Linear(n_in, n_out))
        if i < len(sizes) - 2 or last_activation:
            layers.append(nn.ReLU())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class _TorchClassifier(ClassifierMixin, BaseEstimator):
    """Shared fit / predict machinery; subclasses build the network (and may pretrain it)."""

    # -- to override ---------------------------------------------------------------------------------------
    def _build_network(self, n_features: int, n_classes: int) -> nn.Module:
        raise NotImplementedError

    def _pretrain(self, network: nn.Module, X, generator: torch.Generator) -> None:
        """Hook before supervised training (the autoencoder's reconstruction pretraining)."""

    def _trainable(self, network: nn.Module):
        return network.parameters()

    # -- fitting -------------------------------------------------------------------------------------------
    def fit(self, X, y):
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=[np.float32, np.float64])
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        fraction = self.validation_fraction if self.early_stopping else 0.0
        train, val = stratified_holdout(codes, fraction, seed)
        weight = None
        if self.class_weight is not None:  # "balanced" or {label: weight}
            weight = torch.from_numpy(compute_class_weight(self.class_weight, classes=self.classes_, y=y)
                                      .astype(np.float32))
        with torch_session(seed, self.n_threads):
            generator = torch.Generator().manual_seed(seed)
            network = self._build_network(X.shape[1], len(self.classes_))
            self._pretrain(network, X, generator)
            self._train(network, X, codes, train, val, weight, generator)
            self.temperature_ = 1.0
            if self.temperature == "fit" and len(val):
                self.temperature_ = fit_temperature(self._logits(network, X[val]), codes[val])
            elif self.temperature != "fit":
                self.temperature_ = float(self.temperature)
        self.state_dict_ = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
        return self

    def _train(self, network, X, codes, train, val, weight, generator) -> None:
        # fused: one kernel for all parameters (the unfused CPU loop costs more than the forward pass here)
        optimizer = torch.optim.AdamW(list(self._trainable(network)), lr=self.learning_rate,
                                      weight_decay=self.weight_decay, fused=True)
        targets = torch.from_numpy(codes.astype(np.int64))
        best, best_state, waited = np.inf, None, 0
        self.history_ = []
        for epoch in range(self.max_epochs):
            network.train()
            order = train[torch.randperm(len(train), generator=generator).numpy()]
            total = 0.0
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                loss = F.cross_entropy(network(batch_rows(X, rows)), targets[rows], weight=weight)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(rows)
            record = {"epoch": epoch + 1, "train_loss": total / max(len(order), 1)}
            if len(val):  # the training objective (class weights included) on the validation rows
                record["val_loss"] = self._loss(network, X, val, targets, weight)
                if record["val_loss"] < best - self.tol:
                    best, best_state, waited = record["val_loss"], copy.deepcopy(network.state_dict()), 0
                else:
                    waited += 1
            self.history_.append(record)
            if len(val) and waited >= self.patience:
                break
        if best_state is not None:
            network.load_state_dict(best_state)
        self.n_epochs_ = len(self.history_)

    def _loss(self, network: nn.Module, X, rows, targets, weight, batch_size: int = 1024) -> float:
        """Mean (class-weighted) cross-entropy over `rows`, in float64, computed a batch at a time (the logits of a
        whole validation fold over thousands of classes would take gigabytes)."""
        network.eval()
        weight = None if weight is None else weight.double()
        total, norm = 0.0, 0.0
        with torch.no_grad():
            for start in range(0, len(rows), batch_size):
                part = rows[start:start + batch_size]
                logits = network(batch_rows(X, part, torch.float32)).double()
                y = targets[part]
                total += float(F.cross_entropy(logits, y, weight=weight, reduction="sum"))
                norm += float(len(part) if weight is None else weight[y].sum())
        return total / max(norm, 1e-12)

    def _logits(self, network: nn.Module, X, batch_size: int = 1024) -> np.ndarray:
        network.eval()
        dtype = next(network.parameters()).dtype
        out = []
        with torch.no_grad():
            for start in range(0, X.shape[0], batch_size):
                rows = np.arange(start, min(start + batch_size, X.shape[0]))
                out.append(network(batch_rows(X, rows, dtype)).double().numpy())
        return np.vstack(out) if out else np.zeros((0, len(self.classes_)))

    # -- predicting ----------------------------------------------------------------------------------------
    def _fitted_network(self) -> nn.Module:
        with torch.device("meta"):
            network = self._build_network(self.n_features_in_, len(self.classes_))
        network.load_state_dict({k: v.double() for k, v in self.state_dict_.items()}, assign=True)
        return network

    def _scaled_logits(self, X) -> np.ndarray:
        """Temperature-scaled logits (float64)."""
        check_is_fitted(self, "state_dict_")
        X = validate_data(self, X, reset=False, accept_sparse="csr", dtype=[np.float64, np.float32])
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, int(self.n_threads)))
        try:
            return self._logits(self._fitted_network(), X) / self.temperature_
        finally:
            torch.set_num_threads(threads)

    def predict_proba(self, X) -> np.ndarray:
        logits = self._scaled_logits(X)
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        scores = self._scaled_logits(X)
        return self.classes_[np.argmax(scores, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.non_deterministic = False
        return tags


class TorchMLPClassifier(_TorchClassifier):
    """Multi-layer perceptron: [Linear -> ReLU -> Dropout] x len(hidden_layers) -> Linear, AdamW,
    cross-entropy (class_weight None | "balanced" | {label: weight}), early stopping on validation log loss.
    temperature: a number, or "fit" to scale the logits by likelihood on the validation fold."""

    def __init__(self, hidden_layers=(512,), dropout: float = 0.3, learning_rate: float = 1e-3,
                 weight_decay: float = 1e-4, batch_size: int = 128, max_epochs: int = 100, patience: int = 5,
                 tol: float = 1e-4, early_stopping: bool = True, validation_fraction: float = 0.15,
                 class_weight=None, temperature=1.0, random_state=None, n_threads: int = 2):
        self.hidden_layers = hidden_layers
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.temperature = temperature
        self.random_state = random_state
        self.n_threads = n_threads

    def _build_network(self, n_features: int, n_classes: int) -> nn.Module:
        return mlp([n_features, *[int(h) for h in self.hidden_layers], n_classes], self.dropout)


class _AutoencoderNetwork(nn.Module):
    def __init__(self, n_features: int, n_classes: int, encoder_layers, head_layers, dropout: float):
        super().__init__()
        sizes = [n_features, *[int(h) for h in encoder_layers]]
        self.encoder = mlp(sizes, last_activation=True)
        self.decoder = mlp(sizes[::-1])
        self.head = nn.Sequential(nn.Dropout(dropout),
                                  mlp([sizes[-1], *[int(h) for h in head_layers], n_classes], dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class AutoencoderMLPClassifier(_TorchClassifier):
    """An autoencoder pretrained to reconstruct the inputs of all training rows (labels unused; denoising:
    each input cell dropped with probability `noise`), then a classifier head on its encoding, the encoder
    fine-tuned with it (fine_tune_encoder=True) or frozen. Reconstruction: binary-with-logits cross-entropy on
    0/1 columns, squared error on the others. Pretraining stops when the reconstruction loss has not improved by
    `tol` for `pretrain_patience` epochs; supervised training stops early like TorchMLPClassifier."""

    def __init__(self, encoder_layers=(512, 128), head_layers=(), dropout: float = 0.3, noise: float = 0.1,
                 pretrain_epochs: int = 30, pretrain_patience: int = 3, pretrain_learning_rate: float = 1e-3,
                 fine_tune_encoder: bool = True, learning_rate: float = 1e-3, weight_decay: float = 1e-4,
                 batch_size: int = 128, max_epochs: int = 100, patience: int = 5, tol: float = 1e-4,
                 early_stopping: bool = True, validation_fraction: float = 0.15, class_weight=None,
                 temperature=1.0, random_state=None, n_threads: int = 2):
        self.encoder_layers = encoder_layers
        self.head_layers = head_layers
        self.dropout = dropout
        self.noise = noise
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_patience = pretrain_patience
        self.pretrain_learning_rate = pretrain_learning_rate
        self.fine_tune_encoder = fine_tune_encoder
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.temperature = temperature
        self.random_state = random_state
        self.n_threads = n_threads

    def _build_network(self, n_features: int, n_classes: int) -> nn.Module:
        if not len(self.encoder_layers):
            raise ValueError("encoder_layers needs at least one layer (the last one is the encoding)")
        return _AutoencoderNetwork(n_features, n_classes, self.encoder_layers, self.head_layers, self.dropout)

    def _trainable(self, network: nn.Module):
        if self.fine_tune_encoder:
            return network.parameters()
        for p in network.encoder.parameters():
            p.requires_grad_(False)
        return network.head.parameters()

    @staticmethod
    def _binary_columns(X) -> np.ndarray:
        if sparse.issparse(X):
            values = X.tocsc()
            odd = (values.data != 0) & (values.data != 1)
            column = np.repeat(np.arange(X.shape[1]), np.diff(values.indptr))
            binary = np.ones(X.shape[1], dtype=bool)
            binary[column[odd]] = False
            return binary
        return np.all((X == 0) | (X == 1), axis=0)

    def _pretrain(self, network: nn.Module, X, generator: torch.Generator) -> None:
        binary = torch.from_numpy(self._binary_columns(X))
        self.n_binary_columns_ = int(binary.sum())
        optimizer = torch.optim.AdamW(list(network.encoder.parameters()) + list(network.decoder.parameters()),
                                      lr=self.pretrain_learning_rate, weight_decay=self.weight_decay, fused=True)
        best, waited = np.inf, 0
        self.pretrain_history_ = []
        network.train()
        for _ in range(self.pretrain_epochs):
            order = torch.randperm(X.shape[0], generator=generator).numpy()
            total = 0.0
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                x = dense_rows(X, rows)
                inputs = batch_rows(X, rows)
                if self.noise:
                    # denoising: drop input cells (for sparse rows, only the non-zero ones)
                    values = inputs[2] if isinstance(inputs, tuple) else inputs
                    values = values * (torch.rand(values.shape, generator=generator) >= self.noise).to(values.dtype)
                    inputs = (*inputs[:2], values) if isinstance(inputs, tuple) else values
                out = network.reconstruct(inputs)
                loss = 0.0
                if binary.any():
                    loss = F.binary_cross_entropy_with_logits(out[:, binary], x[:, binary], reduction="sum")
                if (~binary).any():
                    loss = loss + F.mse_loss(out[:, ~binary], x[:, ~binary], reduction="sum")
                loss = loss / x.shape[0]
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * x.shape[0]
            epoch_loss = total / max(len(order), 1)
            self.pretrain_history_.append(epoch_loss)
            if not np.isfinite(best) or epoch_loss < best - self.tol * max(abs(best), 1.0):
                best, waited = epoch_loss, 0
            else:
                waited += 1
                if waited >= self.pretrain_patience:
                    break
