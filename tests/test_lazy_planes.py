"""The lazy nD overlay: numpy's indexing, one fill per read, nothing computed before a read."""

from __future__ import annotations

import numpy as np
import pytest

from napari_gapcam._napari.lazy_overlay import LazyPlanes

GRID = (4, 5)


def grid_of(index: tuple[int, ...]) -> np.ndarray:
    """A grid that says which plane it is: value 100·t + 10·z + row·0.1 + column·0.01."""
    base = sum(10 ** (len(index) - k) * i for k, i in enumerate(index))
    rows, cols = np.mgrid[: GRID[0], : GRID[1]]
    return (base + rows * 0.1 + cols * 0.01).astype(np.float32)


class Counted:
    def __init__(self, empty: set[tuple[int, ...]] = frozenset()) -> None:
        self.calls: list[list[tuple[int, ...]]] = []
        self.empty = empty

    def __call__(self, planes):
        self.calls.append(list(planes))
        return [None if p in self.empty else grid_of(p) for p in planes]


def reference(shape, axes, empty=()) -> np.ndarray:
    """The same overlay built eagerly with numpy."""
    ndim = len(shape)
    axes = tuple(a % ndim for a in axes)
    lead = [a for a in range(ndim) if a not in axes]
    full = [GRID[axes.index(a)] if a in axes else shape[a] for a in range(ndim)]
    out = np.full(full, np.nan, np.float32)  # planes never computed: NaN (transparent)
    for index in np.ndindex(*[shape[a] for a in lead]):
        if index in empty:
            continue
        plane = grid_of(index)
        at = [slice(None)] * ndim
        for a, i in zip(lead, index, strict=True):
            at[a] = i
        out[tuple(at)] = plane if axes[0] < axes[1] else plane.T
    return out


@pytest.mark.parametrize(
    ("shape", "axes"),
    [
        ((6, 40, 50), (-2, -1)),
        ((3, 6, 40, 50), (-2, -1)),
        ((40, 6, 50), (0, 2)),
        ((6, 50, 40), (2, 1)),
        ((40, 50), (-2, -1)),
        ((50, 40), (1, 0)),
    ],
    ids=["zyx", "tzyx", "transposed_view", "rows_after_columns", "yx", "yx_transposed"],
)
def test_reads_match_numpy(shape, axes):
    fill = Counted(empty={(2,), (1, 2)})
    lazy = LazyPlanes(shape, axes, GRID, np.float32, fill)
    expected = reference(shape, axes, empty={(2,), (1, 2)})
    assert lazy.shape == expected.shape and lazy.ndim == expected.ndim
    assert lazy.size == expected.size and lazy.dtype == np.float32
    assert fill.calls == []  # nothing computed before a read
    keys = [
        (1,),
        (-1,),
        (slice(1, 5, 2),),
        (Ellipsis, 2),
        (1, Ellipsis),
        (slice(None), 3),
        (np.int64(2), slice(1, 3)),
        (),
        ([0, 2, 2, -1],),
        (slice(None, None, -2), [1, 0]),
        (np.arange(lazy.shape[0]) % 2 == 0,),
        (0, [1, 0], slice(2, 4)),
        (1, 2),
        (2, 1, slice(None)),
    ]
    for key in keys:
        if len(key) <= lazy.ndim:
            np.testing.assert_array_equal(lazy[key], expected[key])
    np.testing.assert_array_equal(np.asarray(lazy), expected)


def test_a_plane_read_fills_one_plane_and_a_volume_read_fills_all_at_once():
    fill = Counted()
    lazy = LazyPlanes((30, 40, 50), (-2, -1), GRID, np.float32, fill)
    lazy[7]
    assert fill.calls == [[(7,)]]
    np.asarray(lazy)  # a 3D view reads every plane: one call
    assert len(fill.calls) == 2 and fill.calls[1] == [(i,) for i in range(30)]


def test_bad_keys_say_what_is_wrong():
    lazy = LazyPlanes((3, 40, 50), (-2, -1), GRID, np.uint8, Counted())
    with pytest.raises(IndexError, match="out of range"):
        lazy[3]
    with pytest.raises(IndexError, match="1D lists of ints"):
        lazy[[0.5, 1]]
    with pytest.raises(IndexError, match="out of range"):
        lazy[[0, 3]]
    with pytest.raises(IndexError, match="Too many indices"):
        lazy[0, 0, 0, 0]
    with pytest.raises(TypeError, match="cannot be painted on: edit a copy"):
        lazy[0, 1, 1] = 2
