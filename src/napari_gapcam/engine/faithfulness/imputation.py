"""ROAD's noisy linear imputation (Rong et al. 2022), batched on the device.

Each removed pixel takes the weighted mean of its 8 neighbours (1/6 on the sides, 1/12 on the
diagonals, renormalised over the neighbours inside the image), the kept pixels fixed: for
every removed pixel i

    s_i · x_i − Σ_n w_n · x_{i+n} = 0,        s_i = Σ_{n inside the image} w_n,

then ``noise · N(0, 1)`` is added to the removed pixels. ROAD's code (pytorch-grad-cam's
``NoisyLinearImputer``) builds this system for each image and solves it with one sparse LU on
the CPU. Here every image, mask and channel of a batch is solved at once on the device: the
system is symmetric positive definite on the removed pixels (diagonally dominant, strictly next
to a kept pixel), so conjugate gradients converge to the same solution; each is preconditioned
by one multigrid V-cycle (damped Jacobi smoothing, coarse grids where a cell is removed when any
of its pixels is, the same stencil), so ``ITERATIONS`` (14) reach it: within 1e-3 of the
sparse solve at 64², about 1e-2 at most (typically far less) at 224², against the noise of 0.01
added next.
"""

from __future__ import annotations

from .._torch import F, torch

SIDE, DIAGONAL = 1 / 6, 1 / 12
ITERATIONS = 14  # conjugate-gradient iterations (each preconditioned by one V-cycle)
SMALLEST = 6  # the coarsest grid's shorter side (at most), solved by COARSE_SWEEPS sweeps
COARSE_SWEEPS = 12
SWEEPS = 1  # Jacobi sweeps before and after each coarse-grid correction
OMEGA = 0.9  # Jacobi damping


class _Level:
    """One grid: the removed pixels (``free``, N×C×h×w float) and the stencil's operator."""

    def __init__(self, free: torch.Tensor, weights: torch.Tensor) -> None:
        self.free, self.weights = free, weights
        ones = torch.ones_like(free[:1]).contiguous(memory_format=torch.channels_last)
        s = self.neighbours(ones)  # Σ w over the neighbours inside the grid
        self.s_free = s * free
        self.inverse = OMEGA * free / s  # damped Jacobi

    def neighbours(self, v: torch.Tensor) -> torch.Tensor:
        """``Σ_n w_n · v_{i+n}`` (zero outside the grid), every channel on its own."""
        return F.conv2d(v, self.weights, padding=1, groups=v.shape[1])

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        """The system's operator on the removed pixels: ``s·v − Σ w·v`` there, 0 elsewhere."""
        return (self.s_free * v).sub_(self.neighbours(v).mul_(self.free))

    def sweep(self, e: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """One damped Jacobi sweep on ``e`` (zero at kept pixels), in place:
        ``e + ω (r − A e) / s = (1 − ω) e + ω (r + Σ w·e) / s`` on the removed pixels."""
        pulled = self.neighbours(e).add_(r)
        return e.mul_(1.0 - OMEGA).addcmul_(self.inverse, pulled)


def _even(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    return F.pad(x, (0, w % 2, 0, h % 2)) if h % 2 or w % 2 else x


def _levels(free: torch.Tensor, weights: torch.Tensor) -> list[_Level]:
    levels = [_Level(free, weights)]
    while min(levels[-1].free.shape[-2:]) > SMALLEST:
        coarse = F.max_pool2d(_even(levels[-1].free), 2)  # removed if any pixel is
        levels.append(_Level(coarse.contiguous(memory_format=torch.channels_last), weights))
    return levels


def _v_cycle(levels: list[_Level], r: torch.Tensor, k: int = 0) -> torch.Tensor:
    """One V-cycle from zero for ``A e = r`` on level ``k`` (a symmetric preconditioner)."""
    level = levels[k]
    e = r * level.inverse
    sweeps = COARSE_SWEEPS if k == len(levels) - 1 else SWEEPS
    for _ in range(sweeps - 1):
        level.sweep(e, r)
    if k == len(levels) - 1:
        return e
    residual = _even(r - level.apply(e))
    coarse = F.avg_pool2d(residual, 2).mul_(4)  # the sum over each cell (the stencil's scale)
    correction = _v_cycle(levels, coarse.contiguous(memory_format=torch.channels_last), k + 1)
    fine = F.interpolate(correction, scale_factor=2.0, mode="nearest")
    e.add_(fine[..., : r.shape[-2], : r.shape[-1]].mul(level.free))
    for _ in range(sweeps):
        level.sweep(e, r)
    return e


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(dim=(2, 3), keepdim=True)


def _ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a / b`` where ``b > 0``, else 0 (a converged or empty system stays put)."""
    return torch.where(b > 0, a / b.clamp_min(1e-30), torch.zeros_like(a))


def linear_fill(images: torch.Tensor, keep: torch.Tensor, iterations: int = ITERATIONS):
    """``images`` (N×C×H×W) with the pixels where ``keep`` (N×H×W bool) is False replaced by
    the solution of the system of the module docstring (no noise)."""
    n, c, h, w = images.shape
    x0 = images.float().contiguous(memory_format=torch.channels_last)
    kept = keep[:, None].to(x0.dtype).expand(n, c, h, w)
    kept = kept.contiguous(memory_format=torch.channels_last)
    free = 1.0 - kept
    weights = torch.tensor(
        [[DIAGONAL, SIDE, DIAGONAL], [SIDE, 0.0, SIDE], [DIAGONAL, SIDE, DIAGONAL]],
        device=x0.device,
    ).expand(c, 1, 3, 3)
    levels = _levels(free, weights)
    fixed = x0 * kept
    r = levels[0].neighbours(fixed).mul_(free)  # the kept neighbours' share: the right side
    x = torch.zeros_like(r)
    z = _v_cycle(levels, r)
    p, rz = z, _dot(r, z)
    for _ in range(iterations):
        q = levels[0].apply(p)
        alpha = _ratio(rz, _dot(p, q))
        x.add_(alpha * p)
        r.sub_(alpha * q)
        z = _v_cycle(levels, r)
        rz_next = _dot(r, z)
        p = z + _ratio(rz_next, rz) * p
        rz = rz_next
    return (fixed + x).to(images.dtype).contiguous()


def impute(
    images: torch.Tensor,
    keep: torch.Tensor,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
    iterations: int = ITERATIONS,
) -> torch.Tensor:
    """ROAD's noisy linear imputation of the pixels where ``keep`` (N×H×W bool) is False in
    ``images`` (N×C×H×W), on their device: :func:`linear_fill` plus ``noise · N(0, 1)`` there.
    ``generator``: a generator on the images' device (reproducible noise)."""
    filled = linear_fill(images, keep, iterations)
    if noise:
        jitter = torch.randn(
            filled.shape, generator=generator, device=filled.device, dtype=filled.dtype
        )
        filled = filled + noise * jitter * (~keep)[:, None]
    return filled
