"""An nD overlay whose planes are computed only when napari reads them.

napari reads one plane in a 2D view and every plane in a 3D view. :class:`LazyPlanes` hands the
planes of one read to ``fill`` together, so a 3D view costs one batched computation instead of
one small task per plane, and a 2D view costs the displayed plane only. It implements napari's
layer-data protocol (``shape``, ``dtype``, ``ndim``, ``size``, indexing with ints, slices and
lists of ints) and ``__array__`` (``np.asarray(layer.data)`` computes every plane).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Index = tuple[int, ...]  # a plane: its index on the axes other than the grid's
Fill = Callable[[Sequence[Index]], Sequence["np.ndarray | None"]]  # planes → grids (None: empty)


class LazyPlanes:
    """The grid on data axes ``axes`` (``grid``: rows × columns), one plane per index of the
    other axes of ``shape``, each ``fill``-ed when read. Where ``fill`` gives None (a plane
    never computed) a float overlay holds NaN, drawn transparent, and an integer one 0."""

    def __init__(
        self,
        shape: tuple[int, ...],
        axes: tuple[int, int],
        grid: tuple[int, int],
        dtype: Any,
        fill: Fill,
    ) -> None:
        ndim = len(shape)
        self.axes = tuple(a % ndim for a in axes)
        self.lead = tuple(a for a in range(ndim) if a not in self.axes)
        self.grid = tuple(int(g) for g in grid)
        self._transposed = self.axes[0] > self.axes[1]  # the grid's rows come after its columns
        sizes = dict(zip(self.axes, self.grid, strict=True))
        self.shape = tuple(sizes.get(a, int(shape[a])) for a in range(ndim))
        self.dtype = np.dtype(dtype)
        self.fill = fill

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"LazyPlanes(shape={self.shape}, dtype={self.dtype})"

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        data = self[...]
        return data if dtype is None else data.astype(dtype, copy=False)

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError(
            "This overlay is computed from the run's maps and cannot be painted on: edit a copy, "
            "e.g. viewer.add_labels(np.asarray(layer.data))."
        )

    def __getitem__(self, key: Any) -> np.ndarray:
        key = self._full_key(key)
        # the planes this read needs, per lead axis, and where the key finds them among those
        chosen, where = [], []
        for axis in self.lead:
            k = key[axis]
            if isinstance(k, slice):
                chosen.append(list(range(*k.indices(self.shape[axis]))))
                where.append(slice(None))
            elif isinstance(k, np.ndarray):
                unique = np.unique(k)
                chosen.append([int(i) for i in unique])
                where.append(np.searchsorted(unique, k))
            else:
                chosen.append([k])
                where.append(0)
        planes = list(itertools.product(*chosen))
        grids = self.fill(planes) if planes else []
        if len(planes) == 1 and all(isinstance(w, int) for w in where):  # one plane (2D view)
            grid = grids[0]
            plane = self._empty(self.grid) if grid is None else np.asarray(grid, self.dtype)
            plane = plane.T if self._transposed else plane
            return plane[tuple(key[a] for a in range(self.ndim) if a not in self.lead)]
        lead_shape = [len(c) for c in chosen]
        sizes = dict(zip(self.lead, lead_shape, strict=True))
        out = self._empty([sizes.get(a, self.shape[a]) for a in range(self.ndim)])
        for at_lead, grid in zip(np.ndindex(*lead_shape), grids, strict=True):
            if grid is not None:
                plane = np.asarray(grid, self.dtype)
                at: list[Any] = [slice(None)] * self.ndim
                for axis, i in zip(self.lead, at_lead, strict=True):
                    at[axis] = i
                out[tuple(at)] = plane.T if self._transposed else plane
        lead_key = dict(zip(self.lead, where, strict=True))
        return out[tuple(lead_key.get(a, key[a]) for a in range(self.ndim))]

    def _empty(self, shape: Any) -> np.ndarray:
        return np.full(shape, np.nan if self.dtype.kind == "f" else 0, self.dtype)

    def _full_key(self, key: Any) -> tuple[Any, ...]:
        """``key`` with one entry per axis: a slice, a non-negative int or an int array."""
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * (self.ndim - len(key) + 1)
            key = key[:at] + fill + key[at + 1 :]
        key = key + (slice(None),) * (self.ndim - len(key))
        if len(key) != self.ndim:
            raise IndexError(f"Too many indices for an overlay of {self.ndim} dimensions: {key}.")
        return tuple(self._axis_key(axis, k) for axis, k in enumerate(key))

    def _axis_key(self, axis: int, k: Any) -> Any:
        size = self.shape[axis]
        if isinstance(k, slice):
            return k
        if isinstance(k, (list, np.ndarray)):
            array = np.asarray(k)
            if array.dtype == bool and array.shape == (size,):
                array = np.flatnonzero(array)
            if array.dtype.kind not in "iu" or array.ndim != 1:
                raise IndexError(
                    f"An overlay takes ints, slices and 1D lists of ints, not {k!r}: "
                    "use np.asarray(layer.data) for anything else."
                )
            if array.size and not (-size <= array.min() and array.max() < size):
                raise IndexError(f"Index out of range for axis {axis} of {self.shape}: {k!r}.")
            return array % size if size else array
        try:
            i = operator.index(k)
        except TypeError:
            raise IndexError(
                f"An overlay takes ints, slices and 1D lists of ints, not {type(k).__name__}: "
                "use np.asarray(layer.data) for anything else."
            ) from None
        if not -size <= i < size:
            raise IndexError(f"Index {i} is out of range for axis {axis} of {self.shape}.")
        return i % size
