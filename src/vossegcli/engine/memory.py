"""SampleMemory: the weighted training set of one object's target model (FRTM-VOS, section 3.4).

Each sample is (w1-projected stride-16 features, soft label on the label grid, weight γ).

Weight rule (learning rate η, as in the paper and pytracking):

* the initial samples (start frame + augmented copies) weigh 2 (original) : 1 (each copy),
  normalized to sum to 1;
* a new sample goes into the slot with the smallest γ (empty slots have γ = 0, so the memory
  fills up first; once full, the oldest tracked samples go first, and eventually the start-frame
  samples too);
* the first tracked sample: all weights are divided by (1 − η) and the new sample gets η; every
  later one gets (the current weight of the previously inserted sample) / (1 − η), so each sample
  weighs 1/(1 − η) ≈ 1.11× the one before — exponential recency weighting;
* after every insertion the weights are renormalized to sum to 1;
* with ``anchor_weight`` a > 0 the start-frame samples and those of masks given again later
  (:meth:`SampleMemory.add_anchor`) — the *anchors* — keep at least a of the total
  weight (LWL keeps its first frame at ≥ 0.25): when recency weighting would take them below, they
  are scaled up to a and the tracked samples down to 1 − a; anchors are never the slot replaced.
  Without it, after ~40 frames the given mask weighs almost nothing and the model follows its own
  mistakes (drift).

Storage is preallocated at capacity, so memory per object is fixed from the first frame on:
``capacity × (c·h·w + H'·W') × 4`` bytes (features at stride 16, labels at the label stride).
Pixel weights are not stored: they are recomputed from the labels when the model is optimized.

All objects of a video share one store with the object as the leading dimension, so a frame's
insertions are one batched write with no value read back to the host (a per-object ``accept``
flag leaves an object's samples untouched), and the objects re-optimized on the same frame read
their samples as one batch.
"""

from __future__ import annotations

import torch
from torch import Tensor


class SampleMemory:
    """Fixed-capacity weighted sample stores of N objects' target models.

    Args:
        capacity: K_max, the most samples kept per object.
        feature_shape: (h, w, c) of the projected features (channels last).
        label_shape: (H', W') of the labels.
        learning_rate: η of the recency weighting.
        anchor_weight: the least total weight of the start-frame samples (0: no floor).

    Tensors: ``features`` (N, K, h, w, c), ``labels`` (N, K, H', W'), ``weights`` (N, K) float64
    (γ; 0 marks an empty slot), ``previous`` (N,) the slot of each object's last tracked sample
    (−1: none yet), ``anchor`` (N, K) bool, the start-frame samples. ``filled`` (host ints) bounds
    how many leading slots each object may use: slots fill in order (the lightest slot is the first
    empty one; anchors are never replaced when ``anchor_weight`` > 0), so samples are a prefix.
    """

    def __init__(
        self,
        capacity: int,
        feature_shape: tuple[int, int, int],
        label_shape: tuple[int, int],
        learning_rate: float = 0.1,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        anchor_weight: float = 0.0,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if not 0 < learning_rate < 1:
            raise ValueError("learning_rate must be in (0, 1)")
        if not 0 <= anchor_weight < 1:
            raise ValueError("anchor_weight must be in [0, 1)")
        self.capacity = capacity
        self.learning_rate = learning_rate
        self.anchor_weight = anchor_weight
        self.feature_shape = tuple(feature_shape)
        self.label_shape = tuple(label_shape)
        self.features = torch.zeros((0, capacity, *feature_shape), device=device, dtype=dtype)
        self.labels = torch.zeros((0, capacity, *label_shape), device=device, dtype=dtype)
        self.weights = torch.zeros((0, capacity), device=device, dtype=torch.float64)
        self.previous = torch.zeros(0, device=device, dtype=torch.long)
        self.anchor = torch.zeros((0, capacity), device=device, dtype=torch.bool)
        self.filled: list[int] = []

    @property
    def num_objects(self) -> int:
        return int(self.features.shape[0])

    def num_samples(self, obj: int = 0) -> int:
        """Samples held by object ``obj`` (reads a value back: for tests and reports)."""
        return int((self.weights[obj] > 0).sum())

    @property
    def nbytes_per_object(self) -> int:
        """Bytes of stored features and labels per object (fixed at construction)."""
        return self.capacity * (_prod(self.feature_shape) + _prod(self.label_shape)) * self.features.element_size()

    @property
    def nbytes(self) -> int:
        """Bytes held by all objects' stored features and labels."""
        return self.num_objects * self.nbytes_per_object

    def add_objects(self, features: Tensor, labels: Tensor, weights: Tensor) -> None:
        """Append objects with their start-frame samples.

        Args:
            features: (n, k, h, w, c) projected features; sample 0 is the original frame.
            labels: (n, k, H', W') labels.
            weights: (n, k) relative sample weights (the original 2, each augmented copy 1, padding 0),
                normalized here per object.
        """
        n, k = features.shape[:2]
        if k > self.capacity:
            raise ValueError(f"{k} initial samples exceed the capacity {self.capacity}")
        feats = features.new_zeros((n, self.capacity, *self.feature_shape))
        labs = labels.new_zeros((n, self.capacity, *self.label_shape))
        w = torch.zeros((n, self.capacity), dtype=torch.float64, device=features.device)
        feats[:, :k] = features
        labs[:, :k] = labels
        w[:, :k] = weights.to(torch.float64)
        w /= w.sum(dim=1, keepdim=True)
        self.features = torch.cat([self.features, feats.to(self.features.dtype)])
        self.labels = torch.cat([self.labels, labs.to(self.labels.dtype)])
        self.weights = torch.cat([self.weights, w])
        self.previous = torch.cat([self.previous, torch.full((n,), -1, dtype=torch.long, device=features.device)])
        anchor = torch.zeros((n, self.capacity), dtype=torch.bool, device=features.device)
        anchor[:, :k] = w[:, :k] > 0
        self.anchor = torch.cat([self.anchor, anchor])
        self.filled += [k] * n

    def add_anchor(self, objects: list[int], features: Tensor, labels: Tensor, weights: Tensor) -> None:
        """A mask given again for ``objects`` (a later anchor frame): its samples become anchors.

        Per object, the tracked samples are dropped (the given mask supersedes the labels the model
        gave itself since the last anchor, which may be the very mistake being corrected), and the
        new samples weigh as much as all earlier anchors together (within them 2 : 1 : 1 as on a
        start frame), so the latest truth counts most without the first mask being forgotten (3×
        the earlier anchors measured the same on real30: +0.05 and +0.13 J&F, docs/RESULTS.md).
        Recency weighting starts again from the next frame. The new samples take the free slots
        first, then the lightest anchors' when the memory holds nothing but anchors.

        Args:
            objects: slots of the objects anchored.
            features: (n, k, h, w, c) projected features; labels: (n, k, H', W'); weights: (n, k)
                relative sample weights (0: padding).
        """
        k = features.shape[1]
        if k > self.capacity:
            raise ValueError(f"{k} anchor samples exceed the capacity {self.capacity}")
        for j, row in enumerate(objects):
            anchor = self.anchor[row]
            w = torch.where(anchor, self.weights[row], torch.zeros_like(self.weights[row]))
            earlier = float(w.sum())
            new = weights[j].to(torch.float64)
            used = int((new > 0).sum())
            new = new / new.sum() * (earlier if earlier > 0 else 1.0)
            # free slots in order, then the lightest tracked samples, then the lightest anchors
            order = torch.argsort(torch.where(anchor, w + 2.0, w), stable=True)
            slots = order[:used]
            w[slots] = new[:used]
            self.weights[row] = w / w.sum()
            self.features[row, slots] = features[j, :used].to(self.features.dtype)
            self.labels[row, slots] = labels[j, :used].to(self.labels.dtype)
            self.anchor[row] = anchor
            self.anchor[row, slots] = True
            self.previous[row] = -1
            self.filled[row] = max(self.filled[row], int(slots.max()) + 1)

    def insert(self, features: Tensor, labels: Tensor, accept: Tensor | None = None) -> Tensor:
        """Add one sample per object: (N, h, w, c) features, (N, H', W') labels; objects whose
        ``accept`` (N,) is False are left unchanged. Returns the (N,) slots written (or that would
        have been)."""
        n = self.num_objects
        eta = self.learning_rate
        rows = torch.arange(n, device=self.weights.device)
        candidates = self.weights.masked_fill(self.anchor, float("inf")) if self.anchor_weight > 0 else self.weights
        slot = torch.argmin(candidates, dim=1)  # empty slots (γ = 0) first, then the lightest
        first = self.previous < 0
        prev_weight = self.weights[rows, self.previous.clamp(min=0)]
        scaled = torch.where(first[:, None], self.weights / (1 - eta), self.weights)
        new_weight = torch.where(first, torch.full_like(prev_weight, eta), prev_weight / (1 - eta))
        updated = scaled.scatter(1, slot[:, None], new_weight[:, None])
        updated = updated / updated.sum(dim=1, keepdim=True)
        if self.anchor_weight > 0:
            updated = self._floor_anchors(updated)
        if accept is None:
            accept = torch.ones(n, dtype=torch.bool, device=self.weights.device)
        self.weights = torch.where(accept[:, None], updated, self.weights)
        keep = accept.view(n, *([1] * len(self.feature_shape)))
        self.features[rows, slot] = torch.where(keep, features.to(self.features.dtype), self.features[rows, slot])
        keep = accept.view(n, *([1] * len(self.label_shape)))
        self.labels[rows, slot] = torch.where(keep, labels.to(self.labels.dtype), self.labels[rows, slot])
        self.previous = torch.where(accept, slot, self.previous)
        self.anchor[rows, slot] &= ~accept  # (a slot taken from an anchor, anchor_weight 0, is tracked now)
        self.filled = [min(self.capacity, f + 1) for f in self.filled]
        return slot

    def _floor_anchors(self, weights: Tensor) -> Tensor:
        """(N, K) weights summing to 1 → the same with the anchors' share raised to ``anchor_weight``
        where it fell below (tracked samples scaled down in proportion)."""
        a = self.anchor_weight
        share = (weights * self.anchor).sum(dim=1, keepdim=True)
        rest = (1 - share).clamp_min(1e-300)
        low = (share < a) & (share > 0)
        floored = torch.where(self.anchor, weights * a / share.clamp_min(1e-300), weights * (1 - a) / rest)
        return torch.where(low, floored, weights)

    def active(self, objects: list[int] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(features (n, k, h, w, c), labels (n, k, H', W'), weights (n, k) float32 summing to 1 per
        object) of the given objects (all by default), over the leading slots they may use;
        empty slots in that range have weight 0."""
        rows = list(range(self.num_objects)) if objects is None else objects
        k = max(self.filled[i] for i in rows)
        if len(rows) == self.num_objects:
            feats, labs, w = self.features[:, :k], self.labels[:, :k], self.weights[:, :k]
        else:
            index = torch.tensor(rows, device=self.features.device)
            feats, labs, w = self.features[index, :k], self.labels[index, :k], self.weights[index, :k]
        return feats, labs, (w / w.sum(dim=1, keepdim=True)).to(self.features.dtype)

    def select(self, slots: list[int]) -> None:
        """Keep only the objects in ``slots``, in that order."""
        index = torch.tensor(slots, dtype=torch.long, device=self.features.device)
        self.features, self.labels = self.features[index], self.labels[index]
        self.weights, self.previous, self.anchor = self.weights[index], self.previous[index], self.anchor[index]
        self.filled = [self.filled[i] for i in slots]

    # -- saving and restoring (exact resume) -------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly; only the slots in use are stored."""
        k = max(self.filled, default=0)
        return {
            "capacity": self.capacity, "learning_rate": self.learning_rate,
            "feature_shape": list(self.feature_shape), "label_shape": list(self.label_shape),
            "features": self.features[:, :k].clone(), "labels": self.labels[:, :k].clone(),
            "weights": self.weights.clone(), "previous": self.previous.clone(), "filled": list(self.filled),
            "anchor_weight": self.anchor_weight, "anchor": self.anchor.clone(),
        }

    @classmethod
    def from_state_dict(cls, state: dict, device: torch.device | str = "cpu") -> "SampleMemory":
        mem = cls(state["capacity"], tuple(state["feature_shape"]), tuple(state["label_shape"]),
                  state["learning_rate"], device=device, dtype=state["features"].dtype,
                  anchor_weight=state.get("anchor_weight", 0.0))
        n, k = state["features"].shape[:2]
        mem.features = torch.zeros((n, mem.capacity, *mem.feature_shape), device=device, dtype=mem.features.dtype)
        mem.labels = torch.zeros((n, mem.capacity, *mem.label_shape), device=device, dtype=mem.labels.dtype)
        mem.features[:, :k] = state["features"].to(device)
        mem.labels[:, :k] = state["labels"].to(device)
        mem.weights = state["weights"].to(device)
        mem.previous = state["previous"].to(device)
        mem.filled = list(state["filled"])
        mem.anchor = state["anchor"].to(device) if "anchor" in state else \
            torch.zeros((n, mem.capacity), dtype=torch.bool, device=device)
        return mem


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for v in shape:
        out *= v
    return out
