"""An append-only numpy array with amortized O(1) growth."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


class GrowableArray:
    """A 1-d or 2-d numpy array that grows along its first axis by doubling capacity."""

    __slots__ = ("_data", "_size")

    def __init__(self, dtype: Any, width: int | None = None, fill: Any = 0) -> None:
        shape: tuple[int, ...] = (16,) if width is None else (16, width)
        self._data: NDArray[Any] = np.full(shape, fill, dtype=dtype)
        self._size = 0

    @classmethod
    def wrap(cls, array: NDArray[Any]) -> GrowableArray:
        grown = cls(array.dtype, None if array.ndim == 1 else array.shape[1])
        grown._data = np.array(array, copy=True)
        grown._size = len(array)
        return grown

    def __len__(self) -> int:
        return self._size

    @property
    def view(self) -> NDArray[Any]:
        """The filled part (a view: valid until the next append)."""
        return self._data[: self._size]

    def reserve(self, capacity: int, fill: Any = 0) -> None:
        if capacity <= len(self._data):
            return
        new_cap = max(capacity, 2 * len(self._data))
        grown = np.full((new_cap, *self._data.shape[1:]), fill, dtype=self._data.dtype)
        grown[: self._size] = self._data[: self._size]
        self._data = grown

    def extend(self, values: ArrayLike) -> None:
        values = np.asarray(values, dtype=self._data.dtype)
        end = self._size + len(values)
        self.reserve(end)
        self._data[self._size : end] = values
        self._size = end

    def pad_to(self, size: int, fill: Any) -> None:
        """Append ``fill`` until the array holds ``size`` items."""
        if size > self._size:
            self.reserve(size, fill)
            self._data[self._size : size] = fill
            self._size = size
