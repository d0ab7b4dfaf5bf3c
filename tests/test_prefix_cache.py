"""The prefix cache's tree alone: page-aligned match and insert, node splits, LRU eviction, flush.

The payload is a list with one fake "KV" entry per token (10 * token id), so every test can also check
that the KV handed back belongs to exactly the matched ids.
"""

from __future__ import annotations

import pytest

from hf_engine.prefix_cache import PrefixCache


def kv(ids):
    return [10 * i for i in ids]


def insert(cache, ids):
    return cache.insert(ids, kv(ids))


def test_empty_cache_matches_nothing():
    cache = PrefixCache(page_size=1, max_tokens=100)
    result = cache.match([1, 2, 3])
    assert (result.length, result.payload) == (0, None)


def test_exact_and_partial_match_page_1():
    cache = PrefixCache(page_size=1, max_tokens=100)
    assert insert(cache, [1, 2, 3, 4, 5]) == 5
    full = cache.match([1, 2, 3, 4, 5, 6])
    assert full.length == 5 and full.payload == kv([1, 2, 3, 4, 5])
    part = cache.match([1, 2, 9])
    assert part.length == 2 and part.payload == kv([1, 2])
    assert cache.match([9, 1, 2]).length == 0


@pytest.mark.parametrize("page_size", [1, 4, 16])
def test_match_and_insert_are_page_aligned(page_size):
    cache = PrefixCache(page_size=page_size, max_tokens=10_000)
    prompt = list(range(100, 300))  # 200 ids
    stored = insert(cache, prompt)
    assert stored == 200 - 200 % page_size
    # The engine asks for at most len-1 ids, as SGLang does: 199 at page 1, 192 at page 16.
    result = cache.match(prompt[:-1])
    assert result.length == (199 // page_size) * page_size
    assert result.payload == kv(prompt[: result.length])


def test_divergence_inside_a_page_stops_at_the_page_before():
    cache = PrefixCache(page_size=4, max_tokens=100)
    insert(cache, list(range(12)))
    probe = list(range(6)) + [99] + list(range(7, 12))
    result = cache.match(probe)
    assert result.length == 4 and result.payload == kv(range(4))


def test_branching_splits_a_node_and_shares_the_prefix():
    cache = PrefixCache(page_size=1, max_tokens=1000)
    prefix = list(range(50))
    assert insert(cache, prefix + [1000, 1001, 1002]) == 53
    # The second branch stores only its own suffix; the first node is split at the branch point.
    assert insert(cache, prefix + [2000, 2001]) == 2
    assert cache.stats()["cached_tokens"] == 55
    assert cache.stats()["nodes"] == 3
    assert cache.match(prefix + [2000, 2001, 7]).payload == kv(prefix + [2000, 2001])
    assert cache.match(prefix + [1000, 1001, 1002]).payload == kv(prefix + [1000, 1001, 1002])
    assert cache.match(prefix + [3000]).length == 50
    assert cache.cached_sequences() == sorted([tuple(prefix + [1000, 1001, 1002]), tuple(prefix + [2000, 2001])])


def test_reinserting_a_cached_sequence_adds_nothing_and_extension_adds_the_rest():
    cache = PrefixCache(page_size=2, max_tokens=1000)
    assert insert(cache, list(range(10))) == 10
    assert insert(cache, list(range(10))) == 0
    assert insert(cache, list(range(15))) == 4  # 10..13 stored, 14 is half a page
    assert cache.match(list(range(20))).length == 14


def test_lru_eviction_keeps_total_under_bound_and_drops_least_recent_first():
    cache = PrefixCache(page_size=1, max_tokens=30)
    a, b, c = [[base + i for i in range(10)] for base in (100, 200, 300)]
    for seq in (a, b, c):
        insert(cache, seq)
    assert cache.stats()["cached_tokens"] == 30
    cache.match(a)  # a becomes most recent; b is now the oldest
    insert(cache, [400 + i for i in range(10)])
    assert cache.stats()["cached_tokens"] <= 30
    assert cache.match(b).length == 0
    assert cache.match(a).length == 10
    assert cache.match(c).length == 10
    assert cache.stats()["evicted_tokens"] == 10


def test_eviction_removes_leaves_before_their_shared_parent():
    cache = PrefixCache(page_size=1, max_tokens=25)
    shared = list(range(10))
    insert(cache, shared + [100 + i for i in range(5)])
    insert(cache, shared + [200 + i for i in range(5)])
    cache.match(shared + [200])  # touch the second branch
    insert(cache, [900 + i for i in range(8)])  # 28 > 25: the older branch leaf goes
    assert cache.stats()["cached_tokens"] == 23
    assert cache.match(shared + [100]).length == 10
    assert cache.match(shared + [200, 201]).length == 12


def test_an_insert_longer_than_the_bound_is_truncated_to_it():
    cache = PrefixCache(page_size=4, max_tokens=10)
    assert insert(cache, list(range(40))) == 8
    assert cache.stats()["cached_tokens"] == 8
    assert cache.match(list(range(40))).length == 8


def test_flush_empties_everything():
    cache = PrefixCache(page_size=1, max_tokens=100)
    insert(cache, [1, 2, 3])
    insert(cache, [4, 5, 6])
    cache.flush()
    assert cache.stats()["cached_tokens"] == 0 and cache.stats()["nodes"] == 0
    assert cache.match([1, 2, 3]).length == 0


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="page_size"):
        PrefixCache(page_size=0, max_tokens=10)
    with pytest.raises(ValueError, match="max_tokens"):
        PrefixCache(page_size=1, max_tokens=-1)
