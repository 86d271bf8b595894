"""N-way K-shot evaluation on frozen features: episodes, nearest class centroid, LaplacianShot, 95% CI.

The protocol of the direct-sum paper (003_3b01b74d9ee629e7.txt, Sec. 3.1 "Few-shot classification", Tables 4–5):
after training, the classification head is detached; features of the novel (test) classes are extracted once by
the frozen backbone; 10,000 episodes of N = 5 classes × (K ∈ {1, 5} support + 15 query) samples are drawn, and
the queries are classified by the nearest class centroid of the supports (inductive, Table 4) or by LaplacianShot
(Ziko et al., ICML 2020, the paper's reference [33]/[63]; transductive, Table 5). The result is the mean accuracy
over episodes with its 95% confidence interval 1.96·std/√E, as SimpleShot and LaplacianShot report it.

Everything is vectorized over episodes: the indices of all episodes are drawn as tensors ([E, N, K] supports,
[E, N, Q] queries), features are gathered as [E, N, K, d] / [E, N·Q, d] in chunks of episodes, and distances are
batched matrix products. Per-sample normalizations (L2, CL2N) are applied once to the whole feature matrix
before any gather, which is the same as normalizing inside each episode. 10,000 episodes on 640-d features take
seconds on a CPU (``benchmarks/fewshot_episodes.py`` measures it against a per-episode loop). Unit rows,
squared distances and the nearest-centroid rule are ``featspace.functional``'s, the ones heads and the other
metrics use.

Shapes: E episodes, N ways, K shots, Q queries per class, M = N·Q queries per episode, d feature width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from featspace.functional.rows import nearest_centroid, normalize_rows, squared_distances

__all__ = [
    "NORMS",
    "METHODS",
    "EpisodeIndices",
    "FewShotResult",
    "normalize_features",
    "sample_episodes",
    "ncc_predict",
    "laplacianshot_predict",
    "laplacianshot_assignments",
    "rectify_prototypes",
    "confidence_interval",
    "evaluate_episodes",
]

NORMS = ("none", "l2", "cl2n")
METHODS = ("ncc", "laplacianshot")

# episodes whose indices are drawn per step of the generator; fixed so that the episodes depend on the seed
# alone, never on the chunk size used to evaluate them
_SAMPLING_CHUNK = 1024
# bytes of gathered features per evaluation chunk (the default chunk size is derived from it)
_CHUNK_BYTES = 32 * 2**20


@dataclass(frozen=True)
class EpisodeIndices:
    """Indices into a feature matrix for E episodes.

    ``support`` [E, N, K] and ``query`` [E, N, Q] index the rows of the features; ``classes`` [E, N] holds the
    original label of each way. Within an episode the ways are labelled 0..N−1 in the order of ``classes``, so
    the query at ``query[e, n, q]`` has episode label n.
    """

    support: Tensor
    query: Tensor
    classes: Tensor

    @property
    def episodes(self) -> int:
        return int(self.support.shape[0])

    @property
    def ways(self) -> int:
        return int(self.support.shape[1])

    @property
    def shots(self) -> int:
        return int(self.support.shape[2])

    @property
    def queries(self) -> int:
        return int(self.query.shape[2])

    def slice(self, start: int, stop: int) -> EpisodeIndices:
        return EpisodeIndices(self.support[start:stop], self.query[start:stop], self.classes[start:stop])


@dataclass
class FewShotResult:
    """Accuracy of one classifier over E episodes: ``mean`` and ``ci95`` (fractions in [0, 1]), ``std`` the
    population standard deviation of the per-episode accuracies ``accuracies`` [E]."""

    method: str
    norm: str
    ways: int
    shots: int
    queries: int
    episodes: int
    mean: float
    ci95: float
    std: float
    accuracies: Tensor = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The numbers, without the per-episode accuracies (for JSON)."""
        return {"method": self.method, "norm": self.norm, "ways": self.ways, "shots": self.shots,
                "queries": self.queries, "episodes": self.episodes, "mean": self.mean, "ci95": self.ci95,
                "std": self.std}


# ------------------------------------------------------------------------------------------ features
def normalize_features(features: Tensor, norm: str = "none", base_mean: Tensor | None = None) -> Tensor:
    """Per-sample feature normalization of SimpleShot (Wang et al. 2019) used by LaplacianShot's evaluation.

    ``features`` [M, d] → [M, d]:
    - ``"none"`` (SimpleShot "UN"): unchanged;
    - ``"l2"`` ("L2N"): x / ‖x‖;
    - ``"cl2n"`` ("CL2N"): (x − x̄) / ‖x − x̄‖ with x̄ = ``base_mean`` [d], the mean feature of the *base*
      (training) classes — never of the novel classes, which would leak the test distribution.
    A zero vector stays zero (its norm is clamped at 1e-12) instead of becoming NaN.
    """
    if norm not in NORMS:
        raise ValueError(f"unknown feature normalization {norm!r}; valid: {', '.join(NORMS)}")
    if features.dim() != 2:
        raise ValueError(f"features must have shape [M, d], got shape {tuple(features.shape)}")
    if norm == "none":
        return features
    if norm == "cl2n":
        if base_mean is None:
            raise ValueError("norm='cl2n' needs base_mean, the mean feature of the base (training) classes")
        base_mean = torch.as_tensor(base_mean, dtype=features.dtype, device=features.device).reshape(-1)
        if base_mean.shape[0] != features.shape[1]:
            raise ValueError(f"base_mean has {base_mean.shape[0]} entries, features have d = {features.shape[1]}")
        features = features - base_mean
    return normalize_rows(features)


# ------------------------------------------------------------------------------------------ sampling
def sample_episodes(labels: Tensor, *, episodes: int = 10000, ways: int = 5, shots: int = 1, queries: int = 15,
                    seed: int = 0) -> EpisodeIndices:
    """Draw E episodes of N classes × (K support + Q query) samples from ``labels`` [M] (any integer labels).

    Per episode the N classes are a uniformly random subset of the classes present, and per class the K + Q
    samples a uniformly random subset of its samples (no sample is both support and query); episodes are drawn
    independently. The result depends on (labels, episodes, ways, shots, queries, seed) only. Every class must
    hold at least K + Q samples (the authors' loop would silently use fewer queries; here it is an error).
    """
    labels = torch.as_tensor(labels).reshape(-1).cpu()
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    for name, value, low in (("episodes", episodes, 1), ("ways", ways, 1), ("shots", shots, 1),
                             ("queries", queries, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int ≥ {low}, got {value!r}")
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    if classes.numel() < ways:
        raise ValueError(f"{ways}-way episodes need at least {ways} classes; the labels hold {classes.numel()}")
    need = shots + queries
    short = classes[counts < need]
    if short.numel():
        raise ValueError(f"{shots}-shot episodes with {queries} queries need {need} samples per class; "
                         f"class(es) {short.tolist()[:10]} have fewer (smallest: {int(counts.min())})")
    order = torch.argsort(inverse, stable=True)  # sample indices grouped by class
    starts = torch.cumsum(counts, 0) - counts
    max_count = int(counts.max())
    positions = torch.arange(max_count)
    support, query, chosen_classes = [], [], []
    for start in range(0, episodes, _SAMPLING_CHUNK):
        e = min(_SAMPLING_CHUNK, episodes - start)
        # one generator per chunk and per draw, seeded from (seed, chunk): the first episodes are then the same
        # whatever the number of episodes asked for
        chunk_seed = (int(seed) * 1_000_003 + start // _SAMPLING_CHUNK) * 2
        class_generator = torch.Generator().manual_seed(chunk_seed)
        sample_generator = torch.Generator().manual_seed(chunk_seed + 1)
        chosen = torch.rand(e, classes.numel(), generator=class_generator).argsort(dim=1)[:, :ways]  # [e, N]
        keys = torch.rand(e, ways, max_count, generator=sample_generator)
        # positions past a class's count get a key above every real one, so they are never among the smallest
        keys = keys.masked_fill(positions >= counts[chosen].unsqueeze(-1), 2.0)
        picked = keys.topk(need, dim=2, largest=False, sorted=True).indices  # [e, N, K+Q], a random subset
        index = order[starts[chosen].unsqueeze(-1) + picked]
        support.append(index[..., :shots])
        query.append(index[..., shots:])
        chosen_classes.append(classes[chosen])
    return EpisodeIndices(torch.cat(support), torch.cat(query), torch.cat(chosen_classes))


# ------------------------------------------------------------------------------------------ classifiers
def ncc_predict(support: Tensor, query: Tensor) -> Tensor:
    """Nearest class centroid (003 Sec. 3.1; Snell et al. prototypes; SimpleShot): support [E, N, K, d] and
    query [E, M, d] → predicted way [E, M], the argmin over n of ‖q − mean_k support[n, k]‖².

    ``featspace.functional.nearest_centroid``: ‖q‖² is the same for every n, so the argmin is taken of
    ‖p_n‖² − 2 qᵀp_n, one batched product and no pass over the queries to compute their norms (the gathered
    queries dominate the memory traffic).
    """
    return nearest_centroid(query, support.mean(dim=2))


def rectify_prototypes(support: Tensor, query: Tensor, *, temperature: float = 10.0) -> tuple[Tensor, Tensor]:
    """Prototype rectification as in the LaplacianShot authors' code (``--proto-rect``, after Liu et al.'s BD-CSPN).

    support [E, N, K, d], query [E, M, d] → (prototypes [E, N, d], shifted query [E, M, d]):
    1. shift the queries by η = mean(support) − mean(query) (the mean over all N·K supports and all M queries);
    2. on the pool X = supports ∪ shifted queries, predict each x_i by the largest cosine to the plain class
       means p_n, and weigh it by w_in = softmax_n(10 · cos(x_i, p_n));
    3. p'_n = (1/|S_n|) Σ_{i∈S_n} w_in x_i with S_n = {i : argmax_m cos(x_i, p_m) = n}.
    As in the code, p'_n is the *mean* of the weighted samples (not divided by Σ w). Departure: where no sample of
    the pool is predicted as n, the authors' code drops the class and shifts the later prototypes out of line
    with their labels; here p'_n keeps the plain mean p_n.
    """
    shifted = query + (support.flatten(1, 2).mean(1) - query.mean(1)).unsqueeze(1)
    pool = torch.cat([support.flatten(1, 2), shifted], dim=1)  # [E, N·K + M, d]
    means = support.mean(dim=2)
    cosine = normalize_rows(pool) @ normalize_rows(means).transpose(1, 2)
    assigned = torch.nn.functional.one_hot(cosine.argmax(dim=2), means.shape[1]).to(pool.dtype)  # [E, P, N]
    weights = torch.softmax(temperature * cosine, dim=2) * assigned
    counts = assigned.sum(dim=1)  # [E, N]
    rectified = (weights.transpose(1, 2) @ pool) / counts.clamp_min(1).unsqueeze(-1)
    prototypes = torch.where((counts > 0).unsqueeze(-1), rectified, means)
    return prototypes, shifted


def laplacianshot_predict(support: Tensor, query: Tensor, *, lam: float = 1.0, knn: int = 3, max_iter: int = 20,
                          tol: float = 1e-6, rectify: bool = False) -> Tensor:
    """LaplacianShot's prediction: support [E, N, K, d], query [E, M, d] → predicted way [E, M], the argmax of
    the soft assignments of :func:`laplacianshot_assignments` (which documents the method and its arguments)."""
    return laplacianshot_assignments(support, query, lam=lam, knn=knn, max_iter=max_iter, tol=tol,
                                     rectify=rectify).argmax(dim=2)


def laplacianshot_assignments(support: Tensor, query: Tensor, *, lam: float = 1.0, knn: int = 3,
                              max_iter: int = 20, tol: float = 1e-6, rectify: bool = False) -> Tensor:
    """LaplacianShot (Ziko, Dolz, Granger, Ben Ayed, "Laplacian Regularized Few-Shot Learning", ICML 2020):
    support [E, N, K, d], query [E, M, d] → soft assignments Y [E, M, N] of the queries to the ways.

    The soft assignment Y [M, N] of the queries minimises the bound of the Laplacian-regularised objective
        E(Y) = Σ_i Σ_n y_in a_in − λ Σ_{i,j} w_ij y_iᵀ y_j   (+ entropy from the bound),
    with the unary a_in = ‖q_i − p_n‖² (p_n the class mean of the supports, or the rectified prototype) and the
    kNN affinity w_ij = 1 if q_j is among the knn − 1 nearest other queries of q_i, else 0 — the authors count
    the query itself as the first of its ``knn`` neighbours (scikit-learn's NearestNeighbors on the queries), so
    knn = 3 gives two neighbours, and W is not symmetrised. The bound optimisation is, transcribed from the
    authors' ``bound_update``:
        Y⁰ = softmax_n(−A)
        for t = 0 … max_iter − 1:
            Y ← softmax_n(−A + λ · W Y)                                   (row-wise over the N classes)
            B_t = Σ_{i,n} [ y_in log max(y_in, 1e-20) + a_in y_in − λ (W Y)_in y_in ]
            stop if t > 1 and |B_t − B_{t−1}| ≤ tol · |B_{t−1}|
        prediction_i = argmax_n y_in
    Defaults follow the authors' code: knn = 3, λ = 1.0 (their default; they tune it on validation episodes over
    {0.1, 0.3, 0.5, 0.7, 0.8, 1.0, 1.2, 1.5}), 20 iterations, tol 1e-6, no prototype rectification
    (``rectify=True`` applies :func:`rectify_prototypes`). Each episode stops on its own criterion; the vectorized
    loop freezes an episode once it has converged, so the result equals the per-episode loop.
    """
    if knn < 2:
        raise ValueError(f"knn counts the query itself, so it must be ≥ 2, got {knn}")
    if rectify:
        prototypes, query = rectify_prototypes(support, query)
    else:
        prototypes = support.mean(dim=2)
    # the loop works on [E, N, M] (ways × queries): a softmax over the ways is then over a middle dimension,
    # which PyTorch vectorizes along the M queries (ten times faster on the CPU than over a last dimension of 5)
    # one pass over the queries, no q*q temporary: the gathered queries are the largest tensors of a chunk
    query_norms = torch.linalg.vector_norm(query, dim=-1).square_()
    unary = squared_distances(prototypes, query, b_squared_norms=query_norms)  # [E, N, M]
    num_queries = query.shape[1]
    neighbours = min(knn - 1, num_queries - 1)
    affinity_distances = squared_distances(query, query, a_squared_norms=query_norms, b_squared_norms=query_norms)
    affinity_distances.diagonal(dim1=1, dim2=2).fill_(float("inf"))  # the query itself is the 0-th neighbour
    neighbour_index = _nearest(affinity_distances, neighbours)  # [E, M, knn−1]
    gather_index = [neighbour_index[:, :, slot].unsqueeze(1).expand(-1, unary.shape[1], -1)
                    for slot in range(neighbours)]

    def kernel_times(y: Tensor) -> Tensor:  # (W Y)_i = Σ_{j ∈ kNN(i)} y_j, one gather per neighbour slot
        product = torch.zeros_like(y)
        for index in gather_index:
            product += torch.gather(y, 2, index)
        return product

    y = torch.softmax(-unary, dim=1)
    kernel_y = kernel_times(y)
    previous = torch.full((y.shape[0],), float("inf"), dtype=torch.float64, device=y.device)
    active = torch.ones(y.shape[0], dtype=torch.bool, device=y.device)
    for step in range(max_iter):
        updated = torch.softmax(-unary + lam * kernel_y, dim=1)
        pairwise = kernel_times(updated)
        # the bound in float64: its relative change is compared with tol = 1e-6, near float32's resolution
        bound = (updated * torch.log(updated.clamp_min(1e-20)) + unary * updated
                 - lam * pairwise * updated).double().sum((1, 2))
        y = torch.where(active.view(-1, 1, 1), updated, y)
        converged = active & ((bound - previous).abs() <= tol * previous.abs()) if step > 1 else ~active
        previous = torch.where(active & ~converged, bound, previous)
        active = active & ~converged
        if not bool(active.any()):
            break
        # W·Y of the next step; it differs from W·y only in episodes already frozen, whose updates are discarded
        kernel_y = pairwise
    return y.transpose(1, 2)


def _nearest(distances: Tensor, k: int) -> Tensor:
    """Indices [E, A, k] of the k smallest entries of each row of distances [E, A, B], nearest first."""
    if k == 0:
        return distances.new_zeros((*distances.shape[:2], 0), dtype=torch.long)
    if k > 4:
        return distances.topk(k, dim=2, largest=False).indices
    # a few argmins beat topk on the CPU for LaplacianShot's k = 2
    distances = distances.clone()
    found = []
    for _ in range(k):
        nearest = distances.argmin(dim=2, keepdim=True)
        found.append(nearest)
        distances.scatter_(2, nearest, float("inf"))
    return torch.cat(found, dim=2)


# ------------------------------------------------------------------------------------------ statistics
def confidence_interval(accuracies: Tensor) -> tuple[float, float, float]:
    """(mean, 95% half-width, std) of per-episode accuracies [E]: 1.96 · std / √E with the population std,
    as SimpleShot's and LaplacianShot's ``compute_confidence_interval`` (the normal approximation)."""
    values = torch.as_tensor(accuracies, dtype=torch.float64).reshape(-1)
    if values.numel() == 0:
        raise ValueError("no episodes")
    std = float(values.std(unbiased=False)) if values.numel() > 1 else 0.0
    return float(values.mean()), 1.96 * std / math.sqrt(values.numel()), std


# ------------------------------------------------------------------------------------------ the protocol
def _default_chunk(indices: EpisodeIndices, dim: int, method: str, element_size: int) -> int:
    per_episode = indices.ways * (indices.shots + indices.queries) * dim
    if method == "laplacianshot":
        m = indices.ways * indices.queries
        per_episode += 3 * m * m + 8 * m * indices.ways * (indices.shots + 1)
    return max(1, _CHUNK_BYTES // (per_episode * element_size))


def evaluate_episodes(features: Tensor, labels: Tensor | None = None, *, indices: EpisodeIndices | None = None,
                      ways: int = 5, shots: int = 1, queries: int = 15, episodes: int = 10000,
                      method: str = "ncc", norm: str = "none", base_mean: Tensor | None = None, seed: int = 0,
                      chunk_size: int | None = None, lam: float = 1.0, knn: int = 3,
                      rectify: bool = False) -> FewShotResult:
    """Accuracy of ``method`` over N-way K-shot episodes of ``features`` [M, d] with ``labels`` [M].

    Episodes come from :func:`sample_episodes` (``ways``, ``shots``, ``queries``, ``episodes``, ``seed``) unless
    ``indices`` gives them — pass the same indices to compare classifiers on identical episodes. ``norm`` and
    ``base_mean`` select the normalization (:func:`normalize_features`), applied once to all features. Episodes
    are processed ``chunk_size`` at a time (default: about 32 MiB of gathered features per chunk, which stays in
    cache) on the features' device; ``lam``, ``knn`` and ``rectify`` are LaplacianShot's. Returns a
    :class:`FewShotResult`.
    """
    if method not in METHODS:
        raise ValueError(f"unknown few-shot classifier {method!r}; valid: {', '.join(METHODS)}")
    features = torch.as_tensor(features)
    if features.dim() != 2:
        raise ValueError(f"features must have shape [M, d], got shape {tuple(features.shape)}")
    if not features.dtype.is_floating_point:
        features = features.float()
    if not torch.isfinite(features).all():
        raise ValueError("features contain NaN or infinite values")
    if indices is None:
        if labels is None:
            raise ValueError("give labels (to sample episodes) or indices")
        labels = torch.as_tensor(labels).reshape(-1)
        if labels.shape[0] != features.shape[0]:
            raise ValueError(f"{features.shape[0]} features but {labels.shape[0]} labels")
        indices = sample_episodes(labels, episodes=episodes, ways=ways, shots=shots, queries=queries, seed=seed)
    elif int(torch.cat([indices.support.flatten(), indices.query.flatten()]).max()) >= features.shape[0]:
        raise ValueError("episode indices point past the end of the features")
    features = normalize_features(features, norm, base_mean)
    device = features.device
    chunk = chunk_size or _default_chunk(indices, features.shape[1], method, features.element_size())
    query_labels = torch.arange(indices.ways, device=device).repeat_interleave(indices.queries)  # [M]
    accuracies = []
    for start in range(0, indices.episodes, chunk):
        part = indices.slice(start, start + chunk)
        support = features[part.support.to(device)]  # [e, N, K, d]
        query = features[part.query.to(device).flatten(1)]  # [e, M, d], way-major
        if method == "ncc":
            predicted = ncc_predict(support, query)
        else:
            predicted = laplacianshot_predict(support, query, lam=lam, knn=knn, rectify=rectify)
        accuracies.append((predicted == query_labels).float().mean(dim=1).cpu())
    per_episode = torch.cat(accuracies)
    mean, ci95, std = confidence_interval(per_episode)
    return FewShotResult(method=method, norm=norm, ways=indices.ways, shots=indices.shots, queries=indices.queries,
                         episodes=indices.episodes, mean=mean, ci95=ci95, std=std, accuracies=per_episode)
