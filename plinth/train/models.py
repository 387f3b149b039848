"""CTR models over pooled sparse embeddings and dense features, chosen by name.

Every model maps a :class:`~plinth.sparse.jagged.Batch` to logits ``(B,)``. Its sparse
inputs come from two :class:`~plinth.sparse.module.SparseEmbedding` modules:
``embedding`` (``(B, F, dim)``, all fields) and, for models with a first-order term,
``linear`` (``(B, F, 1)``, a one-dimensional table, e.g. trained with FTRL) — or, with
``fused_linear``, one embedding module of ``dim + 1`` columns whose last column is the
first-order weight (one table lookup for both). Everything else is ordinary dense
PyTorch, trained by a torch optimizer.

==========  ======================================================================
``lr``       bias + sum_f w_f + linear(dense)                          (no embedding)
``fm``       lr + pairwise <e_i, e_j> over fields and a dense projection
``deepfm``   fm + MLP(concat(e_1..e_F, dense))
``wide_deep`` lr (wide) + MLP(concat(e, dense)) (deep)
``dcn_v2``   cross network x_{l+1} = x_0 * (W_l x_l + b_l) + x_l, then MLP
``dlrm``     bottom MLP(dense) -> dim; pairwise dots of [bottom, e_1..e_F]; top MLP
==========  ======================================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from plinth.sparse.jagged import Batch
from plinth.sparse.module import SparseEmbedding

__all__ = ["MODELS", "CTRModel", "build_model", "needs_embedding", "needs_linear"]

MODELS = ("lr", "fm", "deepfm", "wide_deep", "dcn_v2", "dlrm")
_LINEAR = {"lr", "fm", "deepfm", "wide_deep"}
_EMBEDDING = {"fm", "deepfm", "wide_deep", "dcn_v2", "dlrm"}


def needs_linear(name: str) -> bool:
    """Whether model ``name`` has a first-order (dimension-1 table) term."""
    return name in _LINEAR


def needs_embedding(name: str) -> bool:
    """Whether model ``name`` reads ``dim``-dimensional embeddings."""
    return name in _EMBEDDING


def _mlp(n_in: int, hidden: Sequence[int], dropout: float, n_out: int | None = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(n_in, h), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        n_in = h
    if n_out is not None:
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class CTRModel(nn.Module):
    """Base: owns the sparse modules and turns a batch into logits ``(B,)``."""

    name = "base"

    def __init__(
        self,
        embedding: SparseEmbedding | None,
        linear: SparseEmbedding | None,
        n_dense: int,
        fused_linear: bool = False,
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.linear = linear
        self.n_dense = n_dense
        self.fused_linear = bool(fused_linear and embedding is not None)
        self.n_fields = len(embedding.features) if embedding is not None else 0
        self.dim = embedding.dim - int(self.fused_linear) if embedding is not None else 0

    def output_layers(self) -> list[nn.Linear]:
        """The layers whose outputs add up to the logit (besides the sparse first-order
        term): an MLP's last layer, a linear term over the dense features."""
        mlp = getattr(self, "mlp", None)
        return [mlp[-1]] if isinstance(mlp, nn.Sequential) else []

    def output_biases(self) -> list[torch.Tensor]:
        """The additive output biases; the first is the model's own."""
        return [m.bias for m in self.output_layers() if m.bias is not None]

    @torch.no_grad()
    def calibrate(self, base_rate: float) -> None:
        """Calibrated start: every prediction starts at the base rate.

        The first output bias gets the base rate's log-odds ``log(p / (1 - p))``; the other
        biases and the output layers' weights start at zero (the sparse first-order
        weights do too, see ``zero_init_columns``), so the first steps see the base rate —
        no saturated sigmoid on a 1% positive rate — and the gradient reaches the output
        layers first, then the layers below them.
        """
        p = min(max(float(base_rate), 1e-6), 1.0 - 1e-6)
        for m in self.output_layers():
            m.weight.zero_()
        biases = self.output_biases()
        for b in biases:
            b.zero_()
        if biases:
            biases[0].fill_(math.log(p / (1.0 - p)))

    def sparse_modules(self) -> list[SparseEmbedding]:
        return [m for m in (self.embedding, self.linear) if m is not None]

    def apply_sparse_gradients(self) -> int:
        """Push row gradients to the tables; call after ``loss.backward()``."""
        return sum(m.apply_sparse_gradients() for m in self.sparse_modules())

    def forward(self, batch: Batch) -> torch.Tensor:
        dense = torch.from_numpy(batch.dense)
        emb = self.embedding(batch.sparse) if self.embedding is not None else None
        first = None
        if self.fused_linear:
            # The table's last column is the field's first-order weight.
            first = emb[..., self.dim].sum(dim=1)
            emb = emb[..., : self.dim]
        elif self.linear is not None:
            first = self.linear(batch.sparse).sum(dim=(1, 2))
        return self.logits(emb, dense, first)

    def logits(
        self, emb: torch.Tensor | None, dense: torch.Tensor, first: torch.Tensor | None
    ) -> torch.Tensor:
        raise NotImplementedError


class LR(CTRModel):
    name = "lr"

    def __init__(self, embedding, linear, n_dense, fused_linear=False, **_: object) -> None:
        super().__init__(embedding, linear, n_dense, fused_linear)
        self.dense_linear = nn.Linear(n_dense, 1, bias=False) if n_dense else None
        self.bias = nn.Parameter(torch.zeros(1))

    def output_layers(self) -> list[nn.Linear]:
        return [*super().output_layers(), *([self.dense_linear] if self.dense_linear is not None else [])]

    def output_biases(self) -> list[torch.Tensor]:
        return [self.bias, *super().output_biases()]

    def _first_order(self, dense: torch.Tensor, first: torch.Tensor | None) -> torch.Tensor:
        out = self.bias.expand(dense.shape[0])
        if first is not None:
            out = out + first
        if self.dense_linear is not None:
            out = out + self.dense_linear(dense).squeeze(1)
        return out

    def logits(self, emb, dense, first):
        return self._first_order(dense, first)


class FM(LR):
    name = "fm"

    def __init__(self, embedding, linear, n_dense, fused_linear=False, **kw: object) -> None:
        super().__init__(embedding, linear, n_dense, fused_linear)
        # Dense features take part in interactions as one extra "field" vector.
        self.dense_proj = nn.Linear(n_dense, self.dim) if n_dense else None

    def _fields(self, emb: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        if self.dense_proj is None:
            return emb
        return torch.cat([emb, self.dense_proj(dense).unsqueeze(1)], dim=1)

    @staticmethod
    def _pairwise(v: torch.Tensor) -> torch.Tensor:
        s = v.sum(dim=1)
        return 0.5 * (s * s - (v * v).sum(dim=1)).sum(dim=1)

    def logits(self, emb, dense, first):
        return self._first_order(dense, first) + self._pairwise(self._fields(emb, dense))


class DeepFM(FM):
    name = "deepfm"

    def __init__(self, embedding, linear, n_dense, hidden=(256, 128), dropout=0.0,
                 fused_linear=False, **kw) -> None:
        super().__init__(embedding, linear, n_dense, fused_linear)
        self.mlp = _mlp(self.n_fields * self.dim + n_dense, hidden, dropout)

    def logits(self, emb, dense, first):
        deep = self.mlp(torch.cat([emb.flatten(1), dense], dim=1)).squeeze(1)
        return super().logits(emb, dense, first) + deep


class WideDeep(LR):
    name = "wide_deep"

    def __init__(self, embedding, linear, n_dense, hidden=(256, 128), dropout=0.0,
                 fused_linear=False, **kw) -> None:
        super().__init__(embedding, linear, n_dense, fused_linear)
        self.mlp = _mlp(self.n_fields * self.dim + n_dense, hidden, dropout)

    def logits(self, emb, dense, first):
        deep = self.mlp(torch.cat([emb.flatten(1), dense], dim=1)).squeeze(1)
        return self._first_order(dense, first) + deep


class DCNv2(CTRModel):
    name = "dcn_v2"

    def __init__(
        self, embedding, linear, n_dense, hidden=(256, 128), dropout=0.0, cross_layers=2, **kw
    ) -> None:
        super().__init__(embedding, None, n_dense)
        d = self.n_fields * self.dim + n_dense
        self.cross = nn.ModuleList(nn.Linear(d, d) for _ in range(cross_layers))
        self.mlp = _mlp(d, hidden, dropout)

    def logits(self, emb, dense, first):
        x0 = torch.cat([emb.flatten(1), dense], dim=1)
        x = x0
        for layer in self.cross:
            x = x0 * layer(x) + x
        return self.mlp(x).squeeze(1)


class DLRM(CTRModel):
    name = "dlrm"

    def __init__(
        self, embedding, linear, n_dense, hidden=(256, 128), dropout=0.0, bottom=(64,), **kw
    ) -> None:
        super().__init__(embedding, None, n_dense)
        # As in the reference DLRM, every bottom layer ends in a ReLU, the last one too.
        self.bottom = (nn.Sequential(*_mlp(n_dense, bottom, 0.0, n_out=self.dim), nn.ReLU())
                       if n_dense else None)
        n_vec = self.n_fields + (1 if n_dense else 0)
        n_pairs = n_vec * (n_vec - 1) // 2
        rows, cols = torch.triu_indices(n_vec, n_vec, offset=1)
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)
        self.top = _mlp(n_pairs + (self.dim if n_dense else 0), hidden, dropout)

    def output_layers(self) -> list[nn.Linear]:
        return [self.top[-1]]

    def logits(self, emb, dense, first):
        vecs = emb
        parts = []
        if self.bottom is not None:
            b = self.bottom(dense)
            vecs = torch.cat([b.unsqueeze(1), emb], dim=1)
            parts.append(b)
        z = torch.bmm(vecs, vecs.transpose(1, 2))[:, self._rows, self._cols]
        parts.append(z)
        return self.top(torch.cat(parts, dim=1)).squeeze(1)


_CLASSES: dict[str, type[CTRModel]] = {
    c.name: c for c in (LR, FM, DeepFM, WideDeep, DCNv2, DLRM)
}


def build_model(
    name: str,
    embedding: SparseEmbedding | None,
    linear: SparseEmbedding | None,
    n_dense: int,
    *,
    hidden: Sequence[int] = (256, 128),
    dropout: float = 0.0,
    cross_layers: int = 2,
    bottom: Sequence[int] = (64,),
    fused_linear: bool = False,
) -> CTRModel:
    """Instantiate model ``name`` (one of :data:`MODELS`) with the given sparse modules.

    ``fused_linear``: the embedding module has ``dim + 1`` columns, the last being each
    field's first-order weight (then ``linear`` is None).
    """
    if name not in _CLASSES:
        raise ValueError(f"unknown model {name!r}; choose one of {list(MODELS)}")
    if needs_embedding(name) and embedding is None:
        raise ValueError(f"model {name!r} needs an embedding module")
    fused_linear = fused_linear and needs_linear(name) and needs_embedding(name)
    if needs_linear(name) and linear is None and not fused_linear:
        raise ValueError(f"model {name!r} needs a linear (dimension-1) module")
    return _CLASSES[name](
        embedding if needs_embedding(name) else None,
        linear if needs_linear(name) else None, n_dense, hidden=tuple(hidden), dropout=dropout,
        cross_layers=cross_layers, bottom=tuple(bottom), fused_linear=fused_linear,
    )
