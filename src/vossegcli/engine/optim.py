"""Generic Gauss–Newton with preconditioned conjugate gradient, for least-squares problems.

The solver knows nothing about target models: a problem is any object with a
``residuals(params) -> Tensor`` method, and the solver minimizes ``‖r(params)‖²``.

One Gauss–Newton step linearizes the residuals around the current parameters w,
``r(w + Δ) ≈ r(w) + J Δ``, and solves the normal equations ``JᵀJ Δ = −Jᵀ r(w)`` approximately
with a few conjugate-gradient iterations started from Δ = 0, then takes the full step
``w ← w + Δ`` (no line search, as in FRTM). J is never formed: ``JᵀJ p`` is computed with
two backward passes (the "double-backward" trick):

1. ``u(g) = Jᵀ g`` via ``autograd.grad(r, w, g, create_graph=True)`` with a dummy vector g
   (u is linear in g);
2. ``J p = ∂(u·p)/∂g`` via ``autograd.grad(u, g, p)``;
3. ``JᵀJ p = autograd.grad(r, w, J p)``.

CG uses a block-scalar diagonal preconditioner (one scalar per parameter tensor) and the
Polak–Ribière β clamped at ≥ 0, and restarts from scratch for every Gauss–Newton step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
from torch import Tensor


class LeastSquaresProblem(Protocol):
    """A problem ``min_w ‖r(w)‖²``; ``residuals`` must be differentiable in ``params``.

    A problem may instead (or also) give its Jacobian products explicitly, which is cheaper and
    needs no autograd graph; the solver then uses them:

    * ``prepare(params) -> (ctx, -Jᵀr(params))`` once per Gauss–Newton step, and
    * ``normal_matvec(params, ctx, p) -> JᵀJ p``.

    A problem with ``batched = True`` holds B independent problems: every parameter tensor has
    the batch as its leading dimension, and CG takes its step sizes per batch element.
    """

    def residuals(self, params: Sequence[Tensor]) -> Tensor:
        """Residual vector (any shape) for the given parameter tensors."""
        ...


def _dot(a: Sequence[Tensor], b: Sequence[Tensor], batched: bool) -> Tensor:
    """Σ over all tensors of ⟨a_i, b_i⟩: a scalar, or (B,) per batch element when ``batched``."""
    if batched:
        return sum((x * y).flatten(1).sum(dim=1) for x, y in zip(a, b))  # type: ignore[return-value]
    return sum((x * y).sum() for x, y in zip(a, b))  # type: ignore[return-value]


def _per_element(scalar: Tensor, like: Tensor) -> Tensor:
    """A scalar or (B,) tensor shaped to broadcast against ``like`` (B, ...)."""
    return scalar.reshape(-1, *([1] * (like.dim() - 1))) if scalar.dim() else scalar


@dataclass
class GaussNewtonCG:
    """Gauss–Newton outer loop with a preconditioned CG inner solver.

    Args:
        preconditioner: one positive scalar per parameter tensor; CG uses ``z = r / m``.
            ``None`` means no preconditioning (all ones).
        polak_ribiere: use the Polak–Ribière β (clamped at ≥ 0); otherwise Fletcher–Reeves.

    The loop never reads a value back to the host (no synchronization on CUDA): CG stops an
    element whose curvature is not positive by zeroing its later steps instead of breaking.
    It works when the caller runs under ``torch.inference_mode()``: explicit-product problems
    need no autograd, and the autograd path leaves inference mode for the solve.
    """

    preconditioner: Sequence[float] | None = None
    polak_ribiere: bool = True

    def run(
        self,
        problem: LeastSquaresProblem,
        params: Sequence[Tensor],
        cg_iterations: Sequence[int],
    ) -> list[Tensor]:
        """Run ``len(cg_iterations)`` Gauss–Newton steps; step i uses ``cg_iterations[i]`` CG iterations.

        Returns new parameter tensors (detached); the inputs are not modified.
        """
        explicit = hasattr(problem, "normal_matvec")
        current = [p.detach().clone() for p in params]
        for n_cg in cg_iterations:
            if n_cg <= 0:
                continue
            current = self._explicit_step(problem, current, n_cg) if explicit else self.step(problem, current, n_cg)
        return current

    def _explicit_step(self, problem, params: Sequence[Tensor], n_cg: int) -> list[Tensor]:
        ctx, b = problem.prepare(params)
        delta = self._conjugate_gradient(lambda p: problem.normal_matvec(params, ctx, p), b, n_cg,
                                         getattr(problem, "batched", False))
        return [p + d for p, d in zip(params, delta)]

    def step(self, problem: LeastSquaresProblem, params: Sequence[Tensor], n_cg: int) -> list[Tensor]:
        """One Gauss–Newton step with ``n_cg`` CG iterations on the normal equations (autograd)."""
        # Inference tensors cannot be recorded by autograd: leave inference mode and use copies.
        with torch.inference_mode(False), torch.enable_grad():
            w = [p.detach().clone().requires_grad_(True) for p in params]
            f0 = problem.residuals(w)
            g = f0.detach().clone().requires_grad_(True)
            u = torch.autograd.grad(f0, w, g, create_graph=True)
            b = [-x.detach() for x in u]  # −Jᵀ r(w): at g = r(w), u(g) is the gradient of ½‖r‖².

            def normal_matvec(p: Sequence[Tensor]) -> list[Tensor]:
                jp = torch.autograd.grad(u, g, p, retain_graph=True)[0]
                jtjp = torch.autograd.grad(f0, w, jp, retain_graph=True)
                return [x.detach() for x in jtjp]

            delta = self._conjugate_gradient(normal_matvec, b, n_cg, getattr(problem, "batched", False))
            return [(p.detach().clone() + d) for p, d in zip(params, delta)]

    def _conjugate_gradient(self, matvec, b: list[Tensor], n_iter: int, batched: bool = False) -> list[Tensor]:
        m = self.preconditioner or [1.0] * len(b)
        if len(m) != len(b):
            raise ValueError(f"preconditioner has {len(m)} entries for {len(b)} parameter tensors")
        x = [torch.zeros_like(t) for t in b]
        r = [t.clone() for t in b]
        p: list[Tensor] | None = None
        rho_old = torch.ones((b[0].shape[0],) if batched else (), dtype=b[0].dtype, device=b[0].device)
        running = torch.ones_like(rho_old, dtype=torch.bool)  # elements CG still updates
        r_prev: list[Tensor] | None = None
        zero = torch.zeros((), dtype=b[0].dtype, device=b[0].device)
        for i in range(n_iter):
            z = [ri / mi for ri, mi in zip(r, m)]
            rho = _dot(r, z, batched)
            if p is None:
                p = z
            else:
                if self.polak_ribiere and r_prev is not None:
                    beta = (rho - _dot(r_prev, z, batched)) / rho_old
                else:
                    beta = rho / rho_old
                beta = torch.where(torch.isfinite(beta), beta.clamp(min=0.0), zero)
                p = [zi + _per_element(beta, pi) * pi for zi, pi in zip(z, p)]
            q = matvec(p)
            curvature = _dot(p, q, batched)
            # Converged (p = 0) or numerically singular: that element keeps what it has.
            running = running & torch.isfinite(curvature) & (curvature > 0)
            alpha = torch.where(running, rho / torch.where(running, curvature, torch.ones_like(curvature)), zero)
            x = [torch.where(_per_element(running, xi), xi + _per_element(alpha, pi) * pi, xi) for xi, pi in zip(x, p)]
            if i < n_iter - 1:
                r_prev = r
                r = [ri - _per_element(alpha, qi) * qi for ri, qi in zip(r, q)]
            rho_old = rho
        return x
