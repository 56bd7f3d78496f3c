"""A least-recently-used map of byte strings bounded by their total size."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable


class ByteBudgetCache:
    """Keeps the most recently used values while their total length stays within ``max_bytes``.

    Thread-safe: PostgreSQL reads run in worker threads. A value larger than a quarter of the budget is not
    kept, so one huge log cannot evict everything else.
    """

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size_bytes = 0
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: bytes) -> None:
        if len(value) > self.max_bytes // 4:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.size_bytes -= len(old)
            self._items[key] = value
            self.size_bytes += len(value)
            while self.size_bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self.size_bytes -= len(evicted)

    def __len__(self) -> int:
        return len(self._items)
