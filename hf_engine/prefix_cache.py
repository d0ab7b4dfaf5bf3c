"""A page-granular radix tree of cached KV with LRU eviction: the prefix cache of the HF reference engine.

It mirrors what SGLang's `RadixCache` does for an attention model, at the level the suites can observe:

- Keys are token ids; every node holds a run of ids whose length is a multiple of `page_size`, so both a
  match and an insert are page-aligned (SGLang matches whole pages only).
- `match(ids)` returns the longest cached prefix of `ids` (whole pages) and its KV; the caller decides how
  many ids it may match (SGLang always leaves at least one prompt token to compute, and stops at
  `logprob_start_len` when input logprobs are wanted).
- `insert(ids, kv)` stores the KV of `ids` (truncated down to a page multiple); shared prefixes are stored
  once, a partially shared node is split at the page where the ids diverge.
- The total number of cached tokens stays under `max_tokens`: least-recently-used leaves go first, a
  parent becoming a leaf is next in line (SGLang's `evict` does the same over its leaf heap).

The tree does not know what KV is: `PayloadOps` slices and concatenates it. The engine passes torch ops
(per-layer key/value tensors along the sequence axis); unit tests pass plain lists. A matched payload is
always a fresh object, so eviction or a flush never touches KV a running request is using.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


def _locked(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class PayloadOps(Protocol):
    """How to cut and join the per-token payload (KV) the tree stores."""

    def slice(self, payload: Any, start: int, end: int, copy: bool) -> Any:
        """Tokens [start, end) of `payload`; `copy=True` must not share memory with the input."""

    def concat(self, payloads: Sequence[Any]) -> Any:
        """Join payloads along the token axis into a new object."""


class ListOps:
    """Payload = a Python list with one entry per token (for tests and for reasoning about the tree)."""

    def slice(self, payload, start, end, copy):
        return list(payload[start:end])

    def concat(self, payloads):
        return [item for part in payloads for item in part]


@dataclass(eq=False)
class _Node:
    key: tuple[int, ...] = ()
    payload: Any = None
    parent: _Node | None = None
    children: dict[tuple[int, ...], _Node] = field(default_factory=dict)
    last_access: int = 0


@dataclass(frozen=True)
class MatchResult:
    """`length` cached ids (a page multiple) and their KV (`None` when nothing matched)."""

    length: int
    payload: Any


class PrefixCache:
    """Radix tree over token ids at `page_size` granularity, bounded by `max_tokens` cached tokens."""

    def __init__(self, page_size: int, max_tokens: int, ops: PayloadOps | None = None):
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        self.page_size = page_size
        self.max_tokens = max_tokens
        self.ops = ops or ListOps()
        self._clock = itertools.count(1)
        self.root = _Node()
        self.total_tokens = 0
        self.evicted_tokens = 0
        # The engine's worker thread does all matching and inserting; the lock only keeps `stats()` from another
        # thread (/server_info) from walking a tree that is being changed.
        self._lock = threading.RLock()

    # -- queries -------------------------------------------------------------------------------------

    @_locked
    def match(self, ids: Sequence[int]) -> MatchResult:
        """Longest cached page-aligned prefix of `ids`; touches the matched path (LRU)."""
        now = next(self._clock)
        node, pos, parts = self.root, 0, []
        while True:
            child = node.children.get(self._page(ids, pos))
            if child is None:
                break
            shared = self._shared_pages(child.key, ids, pos)
            child.last_access = now
            if shared < len(child.key):
                parts.append(self.ops.slice(child.payload, 0, shared, copy=False))
                pos += shared
                break
            parts.append(child.payload)
            pos += shared
            node = child
        if not parts:
            return MatchResult(0, None)
        return MatchResult(pos, self.ops.concat(parts))

    @_locked
    def insert(self, ids: Sequence[int], payload: Any) -> int:
        """Cache the KV of `ids` (payload covers exactly `ids`); returns how many new tokens were stored."""
        usable = min(len(ids), self.max_tokens)
        usable -= usable % self.page_size
        now = next(self._clock)
        node, pos = self.root, 0
        while pos < usable:
            page = self._page(ids, pos)
            child = node.children.get(page)
            if child is None:
                leaf = _Node(
                    key=tuple(ids[pos:usable]),
                    payload=self.ops.slice(payload, pos, usable, copy=True),
                    parent=node,
                    last_access=now,
                )
                node.children[page] = leaf
                self.total_tokens += usable - pos
                added = usable - pos
                self._evict_to_bound()
                return added
            shared = self._shared_pages(child.key, ids[:usable], pos)
            if shared < len(child.key):
                child = self._split(child, shared)
            child.last_access = now
            node, pos = child, pos + shared
        return 0

    @_locked
    def flush(self) -> None:
        self.root = _Node()
        self.total_tokens = 0

    @_locked
    def stats(self) -> dict[str, int]:
        nodes = sum(1 for _ in self._walk(self.root)) - 1
        return {
            "cached_tokens": self.total_tokens,
            "nodes": nodes,
            "max_tokens": self.max_tokens,
            "page_size": self.page_size,
            "evicted_tokens": self.evicted_tokens,
        }

    @_locked
    def cached_sequences(self) -> list[tuple[int, ...]]:
        """Every root-to-leaf id sequence (for tests and debugging)."""
        out = []

        def visit(node, prefix):
            if not node.children and node is not self.root:
                out.append(prefix)
            for child in node.children.values():
                visit(child, prefix + child.key)

        visit(self.root, ())
        return sorted(out)

    # -- internals -----------------------------------------------------------------------------------

    def _page(self, ids: Sequence[int], pos: int) -> tuple[int, ...] | None:
        if pos + self.page_size > len(ids):
            return None
        return tuple(ids[pos : pos + self.page_size])

    def _shared_pages(self, key: tuple[int, ...], ids: Sequence[int], pos: int) -> int:
        """Length (a page multiple) of the common prefix of `key` and `ids[pos:]`."""
        limit = min(len(key), len(ids) - pos)
        limit -= limit % self.page_size
        shared = 0
        while shared < limit:
            end = shared + self.page_size
            if tuple(ids[pos + shared : pos + end]) != key[shared:end]:
                break
            shared = end
        return shared

    def _split(self, child: _Node, at: int) -> _Node:
        """Cut `child` after `at` tokens; return the new upper node (which keeps the parent link)."""
        parent = child.parent
        upper = _Node(
            key=child.key[:at],
            payload=self.ops.slice(child.payload, 0, at, copy=True),
            parent=parent,
            last_access=child.last_access,
        )
        child.payload = self.ops.slice(child.payload, at, len(child.key), copy=True)
        child.key = child.key[at:]
        child.parent = upper
        upper.children[child.key[: self.page_size]] = child
        parent.children[upper.key[: self.page_size]] = upper
        return upper

    def _evict_to_bound(self) -> None:
        if self.total_tokens <= self.max_tokens:
            return
        leaves = [(n.last_access, id(n), n) for n in self._walk(self.root) if n is not self.root and not n.children]
        heapq.heapify(leaves)
        while self.total_tokens > self.max_tokens and leaves:
            _, _, leaf = heapq.heappop(leaves)
            parent = leaf.parent
            del parent.children[leaf.key[: self.page_size]]
            self.total_tokens -= len(leaf.key)
            self.evicted_tokens += len(leaf.key)
            if parent is not self.root and not parent.children:
                heapq.heappush(leaves, (parent.last_access, id(parent), parent))

    @staticmethod
    def _walk(node: _Node):
        stack = [node]
        while stack:
            current = stack.pop()
            yield current
            stack.extend(current.children.values())
