"""The batched target-model problem (explicit Jacobian products) against the autograd reference."""

import torch

from vossegcli.engine.geometry import downsample_mask, upsample_scores
from vossegcli.engine.optim import GaussNewtonCG
from vossegcli.engine.target_model import (
    BatchedSamples, BatchedTargetProblem, TargetModel, TargetModelProblem, TrainingSamples, UpsampleOperator,
    from_batched_weights, hinge_pixel_weights, project_frame, score_projected_batched, to_batched_weights,
)


def _problem_pair(optimize_w1: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n, k, big_c, c, h, w = 2, 3, 6, 4, 5, 7
    feats = torch.randn(n, k, big_c, h, w, generator=g, dtype=torch.float64)
    masks = (torch.rand(n, k, 1, h * 16, w * 16, generator=g) > 0.6).double()
    labels = torch.stack([downsample_mask(m, 4) for m in masks])  # (N, K, 1, H', W')
    gamma = torch.rand(n, k, generator=g, dtype=torch.float64)
    gamma = gamma / gamma.sum(dim=1, keepdim=True)
    models = [TargetModel.initialize(big_c, c, g) for _ in range(n)]
    models = [TargetModel(m.w1.double(), m.w2.double()) for m in models]
    singles = []
    for i in range(n):
        x = feats[i] if optimize_w1 else models[i].project(feats[i])
        samples = TrainingSamples(x, labels[i], hinge_pixel_weights(labels[i], pixel_area=16.0), gamma[i], 4)
        singles.append(TargetModelProblem(samples, (0.3, 0.2), optimize_w1))
    w1 = torch.stack([to_batched_weights(m)[0] for m in models])
    w2 = torch.stack([to_batched_weights(m)[1] for m in models])
    x_b = feats.permute(0, 1, 3, 4, 2).contiguous()
    if not optimize_w1:
        x_b = torch.einsum("nkhwC,nCc->nkhwc", x_b, w1)
    batched = BatchedTargetProblem(BatchedSamples(x_b, labels[:, :, 0], gamma, 4), (0.3, 0.2), optimize_w1)
    params = [w1, w2] if optimize_w1 else [w2]
    return singles, models, batched, params


def _as_single(params_b, i, optimize_w1):
    if optimize_w1:
        m = from_batched_weights(params_b[0][i], params_b[1][i])
        return [m.w1, m.w2]
    return [params_b[0][i].reshape(1, -1, 3, 3)]


def test_upsample_operator_is_upsample_scores_and_its_adjoint():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 6, 9, generator=g, dtype=torch.float64)
    op = UpsampleOperator((6, 9), (24, 35), 4, dtype=torch.float64)
    assert torch.allclose(op(z), upsample_scores(z[:, None], (24, 35), 4)[:, 0], atol=1e-12)
    q = torch.randn(3, 24, 35, generator=g, dtype=torch.float64)
    assert torch.allclose((op(z) * q).sum(), (z * op.adjoint(q)).sum(), atol=1e-9)


def test_batched_scores_equal_the_convolutional_target_model():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 6, 5, 7, generator=g)
    models = [TargetModel.initialize(6, 4, g) for _ in range(3)]
    w1 = torch.stack([to_batched_weights(m)[0] for m in models])
    w2 = torch.stack([to_batched_weights(m)[1] for m in models])
    scores = score_projected_batched(project_frame(x[0].permute(1, 2, 0), w1), w2)  # (N, h, w)
    for i, m in enumerate(models):
        assert torch.allclose(scores[i], m(x)[0, 0], atol=1e-5)


def test_explicit_jacobian_products_equal_autograd_per_object():
    for optimize_w1 in (True, False):
        singles, models, batched, params = _problem_pair(optimize_w1)
        ctx, b = batched.prepare(params)
        g = torch.Generator().manual_seed(3)
        p = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in params]
        jtjp = batched.normal_matvec(params, ctx, p)
        for i, single in enumerate(singles):
            w = [t.clone().requires_grad_(True) for t in _as_single(params, i, optimize_w1)]
            r = single.residuals(w)
            grad = torch.autograd.grad(r.square().sum() / 2, w, retain_graph=True)
            assert all(torch.allclose(-a, e, atol=1e-9) for a, e in zip(_as_single(b, i, optimize_w1), grad))
            # JᵀJ p through forward- and reverse-mode autograd
            pi = _as_single(p, i, optimize_w1)
            _, jp = torch.func.jvp(single.residuals, (w,), (pi,))
            jtjp_ref = torch.autograd.grad(r, w, jp)
            got = _as_single(jtjp, i, optimize_w1)
            assert all(torch.allclose(a, e, atol=1e-8) for a, e in zip(got, jtjp_ref))
            rb, rs = batched.residuals(params)[i], single.residuals(_as_single(params, i, optimize_w1))
            n_data = single.samples.labels.numel()  # data residuals in the same order; then λ·w
            assert torch.allclose(rb[:n_data], rs[:n_data], atol=1e-10)
            assert torch.allclose(rb.square().sum(), rs.square().sum(), atol=1e-10)


def test_batched_solve_equals_solving_each_object_alone():
    singles, models, batched, params = _problem_pair(True, seed=4)
    solver = GaussNewtonCG(preconditioner=(1e-2, 1e-1))
    out = solver.run(batched, params, (3, 5))
    for i, single in enumerate(singles):
        ref = solver.run(single, _as_single(params, i, True), (3, 5))
        got = _as_single(out, i, True)
        assert all(torch.allclose(a, e, atol=1e-8) for a, e in zip(got, ref))


def test_solver_works_inside_inference_mode():
    singles, models, batched, params = _problem_pair(False, seed=5)
    solver = GaussNewtonCG()
    expected = solver.run(singles[0], _as_single(params, 0, False), (4,))
    with torch.inference_mode():
        single_params = [t.clone() for t in _as_single(params, 0, False)]
        got = solver.run(singles[0], single_params, (4,))  # autograd path
        got_b = solver.run(batched, [t.clone() for t in params], (4,))  # explicit path
    assert torch.allclose(got[0], expected[0], atol=1e-9)
    assert torch.allclose(got_b[0][0].reshape(expected[0].shape), expected[0], atol=1e-8)
