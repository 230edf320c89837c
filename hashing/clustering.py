"""Version clusters: a kNN similarity graph (faiss) plus match edges, split into communities (Leiden).

After Serra et al. (2012), "Unsupervised detection of cover song sets": versions are the communities of
a graph whose edges join each track to its nearest neighbours above a calibrated similarity. Match edges
(a MIDI file and the recordings it transcribes) are enforced by merging their endpoints into one node
before community detection, so they always share a cluster. Communities come from igraph's Leiden
(modularity, weighted by similarity) with a fixed seed; a cluster's id is its smallest member id.

The pipeline clusters the version edges its decision accepted (``hashing.decisions``) with a guard against
chaining (``guarded_clusters``): modularity communities let one hub edge join two otherwise unrelated groups, so
the pipeline joins two groups only when accepted edges link a majority of their pairs of members.
``cluster_graph`` (Leiden) clusters weighted edges, e.g. the verified kNN pairs (``verified_edges``,
``hashing.version_align``); ``cluster_labels`` clusters the embedding's kNN graph alone.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

import faiss
import igraph
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

SEED = 0
EXACT_MAX = 50_000  # exact kNN search up to this many tracks
IVF_PROBES = 24


def knn_search(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, neighbours) of every row of ``x`` among all rows: exact inner product up to
    EXACT_MAX rows, an inverted-file index (k-means cells, fixed seed) above."""
    n, dim = x.shape
    if n <= EXACT_MAX:
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, int(4 * np.sqrt(n)), faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = SEED
        index.train(x)
        index.nprobe = IVF_PROBES
    index.add(x)
    return index.search(x, k)


def knn_graph(embeddings: np.ndarray, k: int, min_similarity: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undirected kNN edges (a < b) with inner-product similarity >= min_similarity: (a, b, similarity).

    ``embeddings`` should be L2-normalised so the inner product is the cosine similarity. An edge needs one
    end among the other's k nearest neighbours.
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    n = len(x)
    empty = np.zeros(0, np.int64)
    if n < 2:
        return empty, empty, np.zeros(0, np.float32)
    sims, nbrs = knn_search(x, min(k + 1, n))
    rows = np.repeat(np.arange(n, dtype=np.int64), nbrs.shape[1])
    cols, sims = nbrs.ravel().astype(np.int64), sims.ravel()
    keep = (cols >= 0) & (cols != rows) & (sims >= min_similarity)
    rows, cols, sims = rows[keep], cols[keep], sims[keep]
    lo, hi = np.minimum(rows, cols), np.maximum(rows, cols)
    keys = lo * n + hi
    order = np.lexsort((-sims, keys))
    keys, sims = keys[order], sims[order]
    unique, first = np.unique(keys, return_index=True)
    return unique // n, unique % n, sims[first].astype(np.float32)


def _merge_nodes(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Node -> super-node index after merging the endpoints of every (a, b) pair."""
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def communities(n: int, a: np.ndarray, b: np.ndarray, weights: np.ndarray, seed: int = SEED) -> np.ndarray:
    """Leiden communities (modularity, weighted) of an undirected graph on ``n`` nodes; one label per node."""
    if len(a) == 0:
        return np.arange(n)
    graph = igraph.Graph(n=n, edges=np.column_stack([a, b]).tolist(), directed=False)
    graph.es["weight"] = np.asarray(weights, dtype=np.float64).tolist()
    graph.simplify(combine_edges={"weight": "sum"})
    previous = random.getstate()
    igraph.set_random_number_generator(random.Random(seed))
    try:
        parts = graph.community_leiden(objective_function="modularity", weights="weight", n_iterations=-1)
    finally:
        igraph.set_random_number_generator(random)
        random.setstate(previous)
    return np.asarray(parts.membership)


def cluster_labels(ids: Sequence[str], embeddings: np.ndarray, extra_edges: Iterable[tuple[str, str]] = (),
                   *, k: int = 10, min_similarity: float = 0.95) -> dict[str, str]:
    """Communities of the kNN similarity graph with ``extra_edges`` (e.g. matches) merged into single nodes.

    Returns {id: cluster_id}; a cluster's id is its smallest member id, so labels are deterministic. The
    ends of every extra edge always share a cluster.
    """
    order = sorted(range(len(ids)), key=lambda i: ids[i])  # independent of the input order
    sorted_ids = [ids[i] for i in order]
    x = np.asarray(embeddings, dtype=np.float32)[order] if len(ids) else np.zeros((0, 1), np.float32)
    a, b, w = knn_graph(x, k, min_similarity)
    edges = [(sorted_ids[i], sorted_ids[j], float(s)) for i, j, s in zip(a, b, w, strict=True)]
    return cluster_graph(sorted_ids, edges, extra_edges)


def cluster_graph(ids: Sequence[str], edges: Iterable[tuple[str, str, float]],
                  extra_edges: Iterable[tuple[str, str]] = (), min_similarity: float = -np.inf) -> dict[str, str]:
    """Communities of a weighted graph on ``ids`` given as (id, id, similarity) edges; edges below
    ``min_similarity`` are dropped, and the ends of every extra edge are merged into one node first.

    Returns {id: cluster_id}, a cluster's id being its smallest member id: deterministic whatever the order
    of ``ids`` and ``edges``.
    """
    sorted_ids = sorted(set(ids))
    position = {track_id: i for i, track_id in enumerate(sorted_ids)}
    n = len(sorted_ids)
    kept = sorted((min(position[u], position[v]), max(position[u], position[v]), float(s)) for u, v, s in edges
                  if s >= min_similarity and u in position and v in position and u != v)
    a = np.array([e[0] for e in kept], dtype=np.int64)
    b = np.array([e[1] for e in kept], dtype=np.int64)
    w = np.array([e[2] for e in kept], dtype=np.float64)
    extra = [(position[u], position[v]) for u, v in extra_edges if u in position and v in position]
    ea, eb = (np.array(extra, dtype=np.int64).T if extra else (np.zeros(0, np.int64), np.zeros(0, np.int64)))
    node = _merge_nodes(n, ea, eb)
    a, b = node[a], node[b]
    keep = a != b
    membership = communities(int(node.max()) + 1 if n else 0, a[keep], b[keep], w[keep])[node]
    representative: dict[int, str] = {}
    for track_id, c in zip(sorted_ids, membership, strict=True):
        representative.setdefault(int(c), track_id)  # ids are sorted: the first is the smallest
    return {track_id: representative[int(c)] for track_id, c in zip(sorted_ids, membership, strict=True)}


def guarded_clusters(ids: Sequence[str], edges: Iterable[tuple[str, str, float]],
                     extra_edges: Iterable[tuple[str, str]] = (), link: float = 0.5) -> dict[str, str]:
    """Clusters of ``ids`` joined by ``edges`` (id, id, strength) under a guard against chaining, the ends of every
    extra edge (matches) always together.

    The tracks joined by extra edges start as one group. Then, strongest edge first (ties by ids), the groups of
    an edge's two ends join when the edges between them link more than ``link`` of their pairs of tracks: two
    single tracks join on their edge; a track joins a pair (a MIDI file and its recording, or two versions) only
    with edges to both, at ``link`` = 0.5 (a majority); two pairs need three of their four links. A track with one
    edge into each of two groups does not chain them. Returns {id: cluster_id}, a cluster's id being its smallest
    member id: the same whatever the order of ``ids`` and ``edges``.
    """
    sorted_ids = sorted(set(ids))
    position = {track_id: i for i, track_id in enumerate(sorted_ids)}
    extra = [(position[u], position[v]) for u, v in extra_edges if u in position and v in position]
    ea, eb = (np.array(extra, dtype=np.int64).T if extra else (np.zeros(0, np.int64), np.zeros(0, np.int64)))
    start = _merge_nodes(len(sorted_ids), ea, eb) if sorted_ids else np.zeros(0, np.int64)
    strongest: dict[tuple[int, int], float] = {}
    for u, v, s in edges:
        if u in position and v in position and u != v:
            a, b = sorted((position[u], position[v]))
            strongest[(a, b)] = max(strongest.get((a, b), -np.inf), float(s))
    neighbours: dict[int, set[int]] = {}
    for a, b in strongest:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    group = {i: int(start[i]) for i in range(len(sorted_ids))}
    members: dict[int, set[int]] = {}
    for i, g in group.items():
        members.setdefault(g, set()).add(i)
    for (a, b), _ in sorted(strongest.items(), key=lambda kv: (-kv[1], kv[0])):
        ga, gb = group[a], group[b]
        if ga == gb:
            continue
        links = sum(len(neighbours.get(x, set()) & members[gb]) for x in members[ga])
        if links <= link * len(members[ga]) * len(members[gb]):
            continue
        keep, gone = min(ga, gb), max(ga, gb)
        for x in members[gone]:
            group[x] = keep
        members[keep] |= members.pop(gone)
    representative: dict[int, str] = {}
    for i, track_id in enumerate(sorted_ids):
        representative.setdefault(group[i], track_id)  # ids are sorted: the first is the smallest
    return {track_id: representative[group[i]] for i, track_id in enumerate(sorted_ids)}


def verified_edges(embeddings: np.ndarray, sequences: Sequence[np.ndarray], k: int = 20,
                   min_cosine: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Version edges (a, b, similarity) among the ``k`` nearest neighbours of each track with cosine at least
    ``min_cosine``, re-scored by alignment (``hashing.version_align.verified_similarity``); the pipeline
    computes the same pairs in parallel (``pipelines.versions.VerifyVersions``)."""
    from hashing.version_align import verified_similarity

    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    a, b, cos = knn_graph(x, k, min_cosine)
    fused = np.array([verified_similarity(c, sequences[i], sequences[j]) for i, j, c in zip(a, b, cos, strict=True)],
                     dtype=np.float64)
    return a, b, fused


def nearest_versions(edges: Iterable[tuple[str, str, float]]) -> dict[str, tuple[float, str]]:
    """Each id's most similar other id over ``edges`` (id, id, similarity): {id: (similarity, other id)};
    ties go to the smallest other id, so the result does not depend on the order of the edges."""
    nearest: dict[str, tuple[float, str]] = {}
    for a, b, similarity in edges:
        for one, other in ((a, b), (b, a)):
            if one not in nearest or (-similarity, other) < (-nearest[one][0], nearest[one][1]):
                nearest[one] = (similarity, other)
    return nearest


def stable_labels(labels: dict[str, str], previous: dict[str, str]) -> dict[str, str]:
    """Cluster ids that carry over from a previous assignment (``previous``: id -> cluster id).

    Each new cluster (tracks sharing a label in ``labels``) takes the previous id held by most of its members
    (ties: the smallest id), the largest carrier first, each previous id at most once: a cluster that keeps
    members keeps its id, gaining or losing some; where a cluster splits, its biggest part keeps the id. A
    cluster with no previous id to take is named by its smallest member id not already in use. Deterministic
    whatever the order of the inputs.
    """
    groups: dict[str, list[str]] = {}
    for track_id in sorted(labels):
        groups.setdefault(labels[track_id], []).append(track_id)
    votes = {}
    for label, members in groups.items():
        counts: dict[str, int] = {}
        for m in members:
            if m in previous:
                counts[previous[m]] = counts.get(previous[m], 0) + 1
        votes[label] = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    taken: set[str] = set()
    named: dict[str, str] = {}
    order = sorted(groups, key=lambda g: (-(votes[g][0][1] if votes[g] else 0), groups[g][0]))
    for label in order:
        for old, _ in votes[label]:
            if old not in taken:
                named[label] = old
                taken.add(old)
                break
    reserved = taken | set(previous.values())
    for label in order:
        if label in named:
            continue
        free = [m for m in groups[label] if m not in reserved]
        named[label] = free[0] if free else groups[label][0] + "-" + str(len(named))
        reserved.add(named[label])
    return {track_id: named[labels[track_id]] for track_id in labels}
