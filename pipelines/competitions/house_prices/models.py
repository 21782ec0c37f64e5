"""House Prices models: the d2l linear layer, an MLP with a linear skip (wide and deep) and TabM."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch
from torch import nn

from ...errors import UserError


class MLP(nn.Module):
    """Hidden layers with ReLU and dropout; with skip_linear, a linear term is added to the output,
    so the network learns a ridge-like model plus the non-linear corrections."""

    def __init__(self, n_features: int, hidden: list[int], dropout: float, skip_linear: bool):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.body = nn.Sequential(*layers)
        self.skip = nn.Linear(n_features, 1, bias=False) if skip_linear else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.skip is not None:
            out = out + self.skip(x)
        return out.squeeze(-1)


class Linear(nn.Module):
    """d2l's model: one linear layer."""

    def __init__(self, n_features: int):
        super().__init__()
        self.net = nn.Linear(n_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def build(config, n_features: int, bins: "Bins | None" = None) -> nn.Module:
    """The configured network; a pwl TabM needs its fold's bins (fit_bins, or saved_bins for predict)."""
    if config.model == "linear":
        return Linear(n_features)
    if config.model == "tabm":
        if config.num_embeddings == "pwl" and bins is None:
            raise UserError("tabm with num_embeddings: pwl needs the fold's bins")
        return TabMNet(n_features, config.tabm_k, len(config.hidden), config.hidden[0], config.dropout,
                       config.skip_linear, bins if config.num_embeddings == "pwl" else None, config.d_embedding)
    return MLP(n_features, config.hidden, config.dropout, config.skip_linear)


class TabMNet(nn.Module):
    """TabM (Gorishniy et al., ICLR 2025; the `tabm` package): k MLPs trained at once that share
    their weights except for per-member scalings (BatchEnsemble). forward returns one prediction
    per member, (batch, k): training averages the members' losses, `point` averages their
    predictions.

    Without bins the whole matrix enters as numeric features (TabM.make). With bins
    (num_embeddings: pwl) the columns in `embedded` enter through piecewise-linear embeddings
    (rtdl_num_embeddings, version B) and the others (one-hot columns, interactions, columns with
    two values) as they are, into the same backbone TabM.make builds. The bins, computed on the
    fold's training rows, are buffers of the model: the fold checkpoint holds them and
    `saved_bins` rebuilds the same network for predict. With skip_linear, a linear term of the
    inputs, shared by the members, is added to every member's output (as in MLP)."""

    def __init__(self, n_features: int, k: int, n_blocks: int, d_block: int, dropout: float,
                 skip_linear: bool = False, bins: "Bins | None" = None, d_embedding: int = 16):
        import tabm

        super().__init__()
        self.skip = nn.Linear(n_features, 1, bias=False) if skip_linear else None
        if bins is None:
            self.tabm = tabm.TabM.make(n_num_features=n_features, d_out=1, k=k, n_blocks=n_blocks,
                                       d_block=d_block, dropout=dropout)
            self.embeddings = None
            return
        import rtdl_num_embeddings

        embedded = [int(i) for i in bins.columns]
        embedded_set = set(embedded)
        self.register_buffer("embedded", torch.tensor(embedded, dtype=torch.long))
        self.register_buffer("plain", torch.tensor([i for i in range(n_features) if i not in embedded_set],
                                                   dtype=torch.long))
        self.register_buffer("bin_edges", bins.edges.clone())
        self.register_buffer("bin_counts", bins.counts.clone())
        with _one_bin_is_fine():
            self.embeddings = rtdl_num_embeddings.PiecewiseLinearEmbeddings(
                bins.as_list(), d_embedding, activation=False, version="B")
        chunks = [d_embedding] * len(embedded) + [1] * len(self.plain)
        self.ensemble_view = tabm.EnsembleView(k=k)
        self.backbone = tabm.make_tabm_backbone(d_in=sum(chunks), n_blocks=n_blocks, d_block=d_block,
                                                dropout=dropout, k=k, arch_type="tabm",
                                                start_scaling_init="normal", start_scaling_init_chunks=chunks)
        self.output = tabm.LinearEnsemble(d_block, 1, k=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embeddings is None:
            out = self.tabm(x)
        else:
            h = torch.cat([self.embeddings(x[:, self.embedded]).flatten(1), x[:, self.plain]], dim=1)
            out = self.output(self.backbone(self.ensemble_view(h)))
        out = out.squeeze(-1)  # (batch, k)
        if self.skip is not None:
            out = out + self.skip(x)
        return out


class Bins:
    """Piecewise-linear bin edges for some columns of the matrix: `edges` (columns x most edges,
    a short row padded with its last edge) and `counts` (edges per column), tensors that a
    safetensors checkpoint holds as they are."""

    def __init__(self, columns: torch.Tensor, edges: torch.Tensor, counts: torch.Tensor):
        self.columns, self.edges, self.counts = columns, edges, counts

    @classmethod
    def from_list(cls, columns: list[int], bins: list[torch.Tensor]) -> "Bins":
        width = max(len(b) for b in bins)
        edges = torch.stack([torch.cat([b, b[-1:].expand(width - len(b))]) for b in bins]).float()
        return cls(torch.tensor(columns, dtype=torch.long), edges,
                   torch.tensor([len(b) for b in bins], dtype=torch.long))

    def as_list(self) -> list[torch.Tensor]:
        return [self.edges[i, :int(n)] for i, n in enumerate(self.counts)]


def fit_bins(config, x_train: np.ndarray, n_numeric: int) -> Bins | None:
    """The fold's bins for num_embeddings: pwl (None otherwise): quantile bins, on the training
    rows only, of the recipe's numeric columns (the first n_numeric of the matrix) that take more
    than two values there; the others stay plain inputs."""
    if getattr(config, "model", None) != "tabm" or config.num_embeddings != "pwl":
        return None
    import rtdl_num_embeddings

    x = torch.from_numpy(np.ascontiguousarray(x_train[:, :n_numeric], dtype=np.float32))
    columns = [i for i in range(x.shape[1]) if len(torch.unique(x[:, i])) > 2]
    if not columns:
        raise UserError("num_embeddings: pwl: no numeric column takes more than two values in a fold's training rows")
    n_bins = max(2, min(config.n_bins, len(x) - 1))
    with _one_bin_is_fine():
        bins = rtdl_num_embeddings.compute_bins(x[:, columns], n_bins=n_bins)
    return Bins.from_list(columns, bins)


def saved_bins(config, state: dict, where: str) -> Bins | None:
    """The bins a fold checkpoint of a pwl TabM holds (None for every other model)."""
    if getattr(config, "model", None) != "tabm" or config.num_embeddings != "pwl":
        return None
    missing = [key for key in ("embedded", "bin_edges", "bin_counts") if key not in state]
    if missing:
        raise UserError(f"{where}: checkpoint has no {missing[0]!r} tensor for a tabm model with pwl embeddings")
    columns, edges, counts = state["embedded"].cpu(), state["bin_edges"].cpu().float(), state["bin_counts"].cpu()
    if (columns.ndim != 1 or edges.ndim != 2 or counts.shape != columns.shape or len(edges) != len(counts)
            or not len(counts) or int(counts.min()) < 2 or int(counts.max()) > edges.shape[1]):
        raise UserError(f"{where}: the checkpoint's pwl bins (embedded, bin_edges, bin_counts) do not fit together")
    return Bins(columns, edges, counts)


@contextlib.contextmanager
def _one_bin_is_fine():
    """A column with most rows at one value (LowQualFinSF: 0) gets one bin, min-max scaling;
    rtdl_num_embeddings would warn about each, once per fold and again at predict."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*has just two bin edges", category=UserWarning)
        yield


def point(out: torch.Tensor) -> torch.Tensor:
    """One prediction per row: the mean of TabM's k members, a single-output model's as it is."""
    return out.mean(dim=-1) if out.ndim == 2 else out
