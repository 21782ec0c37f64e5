"""Networks for tables that any tabular competition can use: TabM (a BatchEnsemble of MLPs, the
`tabm` package) with optional piecewise-linear embeddings of its numeric inputs
(rtdl_num_embeddings), and the bins those embeddings need."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch
from torch import nn

from ..errors import UserError


class TabMNet(nn.Module):
    """TabM (Gorishniy et al., ICLR 2025; the `tabm` package): k MLPs trained at once that share
    their weights except for per-member scalings (BatchEnsemble). forward returns one prediction
    per member, (batch, k) for one output or (batch, k, n_out): training averages the members'
    losses, `point` averages their predictions.

    Without bins the whole matrix enters as numeric features (TabM.make). With bins
    (num_embeddings: pwl) the columns in `embedded` enter through piecewise-linear embeddings
    (rtdl_num_embeddings, version B) and the others (one-hot columns, interactions, columns with
    two values) as they are, into the same backbone TabM.make builds. The bins, computed on the
    fold's training rows, are buffers of the model: the fold checkpoint holds them and
    `saved_bins` rebuilds the same network for predict. With skip_linear, a linear term of the
    inputs, shared by the members, is added to every member's output (as in MLP)."""

    def __init__(self, n_features: int, k: int, n_blocks: int, d_block: int, dropout: float,
                 skip_linear: bool = False, bins: "Bins | None" = None, d_embedding: int = 16, n_out: int = 1):
        import tabm

        super().__init__()
        self.skip = nn.Linear(n_features, n_out, bias=False) if skip_linear else None
        if bins is None:
            self.tabm = tabm.TabM.make(n_num_features=n_features, d_out=n_out, k=k, n_blocks=n_blocks,
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
        self.output = tabm.LinearEnsemble(d_block, n_out, k=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embeddings is None:
            out = self.tabm(x)
        else:
            h = torch.cat([self.embeddings(x[:, self.embedded]).flatten(1), x[:, self.plain]], dim=1)
            out = self.output(self.backbone(self.ensemble_view(h)))
        if out.shape[-1] == 1:
            out = out.squeeze(-1)  # (batch, k)
            return out + self.skip(x) if self.skip is not None else out
        # (batch, k, outputs): the shared linear term is added to every member's outputs
        return out + self.skip(x).unsqueeze(1) if self.skip is not None else out


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


def compute_bins(x_train: np.ndarray, n_bins: int, columns: int | None = None) -> Bins:
    """Piecewise-linear bins of the fold's training rows: quantile bins (rtdl_num_embeddings) of the
    first `columns` columns of the matrix (all when None) that take more than two values there; the
    others stay plain inputs."""
    import rtdl_num_embeddings

    x = np.asarray(x_train)
    x = torch.from_numpy(np.ascontiguousarray(x[:, :columns] if columns is not None else x, dtype=np.float32))
    chosen = [i for i in range(x.shape[1]) if len(torch.unique(x[:, i])) > 2]
    if not chosen:
        raise UserError("num_embeddings: pwl: no numeric column takes more than two values in a fold's training rows")
    n_bins = max(2, min(n_bins, len(x) - 1))
    with _one_bin_is_fine():
        bins = rtdl_num_embeddings.compute_bins(x[:, chosen], n_bins=n_bins)
    return Bins.from_list(chosen, bins)


def bins_from_state(state: dict, where: str) -> Bins:
    """The bins a checkpoint of a TabM with pwl embeddings holds."""
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
