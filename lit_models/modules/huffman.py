"""A Huffman tree over a vocabulary, for hierarchical softmax (Morin & Bengio 2005; Mikolov et
al. 2013 build it from word counts so that frequent words get short paths).

Each word is a leaf; its path from the root passes through inner nodes (`points`, numbered
0 .. V-2 as in word2vec.c, the root being V-2) and turns left or right at each (`codes`,
0 or 1). A word's probability is the product of its turns' probabilities, so the leaves'
probabilities sum to one by construction.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import torch


def huffman_tree(counts: Sequence[int]) -> tuple[list[list[int]], list[list[int]]]:
    """Codes and inner-node paths of each word, from the root down, for a vocabulary of
    `counts` (one count per word id). Ties are broken by node id, so the tree is deterministic."""
    n = len(counts)
    if n < 2:
        raise ValueError(f"a Huffman tree needs at least two words, got {n}")
    # Leaves are nodes 0..n-1; inner node j is node n + j.
    heap = [(int(c), i) for i, c in enumerate(counts)]
    heapq.heapify(heap)
    parent = [0] * (2 * n - 1)
    bit = [0] * (2 * n - 1)
    next_node = n
    while len(heap) > 1:
        count_a, a = heapq.heappop(heap)  # the rarer child takes code 0
        count_b, b = heapq.heappop(heap)
        parent[a], parent[b] = next_node, next_node
        bit[a], bit[b] = 0, 1
        heapq.heappush(heap, (count_a + count_b, next_node))
        next_node += 1
    root = 2 * n - 2
    codes, points = [], []
    for leaf in range(n):
        code, path, node = [], [], leaf
        while node != root:
            code.append(bit[node])
            node = parent[node]
            path.append(node - n)  # inner-node index 0..n-2
        codes.append(code[::-1])
        points.append(path[::-1])
    return codes, points


def padded_paths(counts: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The tree as three `(V, max_depth)` tensors: codes, inner-node ids and a mask of the real
    steps (paths shorter than the deepest are padded with node 0, masked out)."""
    codes, points = huffman_tree(counts)
    depth = max(len(c) for c in codes)
    code_t = torch.zeros(len(codes), depth, dtype=torch.float32)
    point_t = torch.zeros(len(codes), depth, dtype=torch.long)
    mask_t = torch.zeros(len(codes), depth, dtype=torch.bool)
    for i, (code, point) in enumerate(zip(codes, points, strict=True)):
        code_t[i, : len(code)] = torch.tensor(code, dtype=torch.float32)
        point_t[i, : len(point)] = torch.tensor(point, dtype=torch.long)
        mask_t[i, : len(code)] = True
    return code_t, point_t, mask_t
