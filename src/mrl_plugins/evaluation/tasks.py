"""Scores of the evaluation tasks beyond retrieval, per width, from full-width embeddings encoded
once: each width is the first ``d`` dimensions, re-normalised (issue #39).

- :func:`similarity`: Spearman and Pearson correlation of the cosine of two texts' embeddings
  with gold scores, as sentence-transformers' ``EmbeddingSimilarityEvaluator`` (with
  ``truncate_dim=d``) computes them: the cosine of each pair, then SciPy's ``spearmanr`` and
  ``pearsonr`` against the gold scores (re-normalising the prefix does not change a cosine).
- :func:`classification`: MTEB's classification protocol (``AbsTaskClassification`` with its
  logistic-regression evaluator): ``n_experiments`` times, the training texts undersampled to
  ``samples_per_label`` per label (a seeded shuffle), a ``LogisticRegression(max_iter=100)``
  fitted on their embeddings, accuracy and macro-F1 on every test text; the means.
- :func:`clustering`: MTEB's clustering protocol (``ClusteringEvaluator``): scikit-learn's
  ``MiniBatchKMeans`` with as many clusters as labels (``batch_size`` 500, ``n_init="auto"``),
  V-measure against the labels; the mean over ``runs`` seeds.

Given ``resamples`` (bootstrap indices, ``TaskContext.resamples(n)``), each also returns
replicates of its main metric on every resample (:class:`~mrl_plugins.contexts.TaskScores`):
Spearman of the resampled pairs; accuracy over the resampled test texts (each text's share of
experiments that classify it right: their mean is the accuracy); V-measure of the resampled
texts against the clusters k-means found on all of them (the clustering is not refitted: the
interval is over which texts were sampled, not over k-means' seeds, whose spread is
``v_measure_sd``).

Given ``validation`` (a boolean mask over the items, ``TaskContext.validation_items``), each
scores the items it marks apart, as the part the run chooses widths on
(``TaskScores.validation``, with replicates over ``validation_resamples`` of them), and everything
else it returns (metrics, replicates) on the rest, held out: the pairs, the test texts (the
classifiers and the clusterings are the same, fitted before the items are told apart; only which
items are scored differs).

NumPy, SciPy and scikit-learn only: no model, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..contexts import TaskScores
from .encode import normalise


def _at(x: np.ndarray, d: int) -> np.ndarray:
    return normalise(np.asarray(x, dtype=np.float32)[:, :d])


def _parts(n: int, validation: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Indices of the held-out items and of the validation items (None without a validation part)."""
    if validation is None:
        return np.arange(n), None
    mask = np.asarray(validation, dtype=bool)
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def similarity(a: np.ndarray, b: np.ndarray, gold: Sequence[float], dims: Sequence[int],
               resamples: np.ndarray | None = None, validation: np.ndarray | None = None,
               validation_resamples: np.ndarray | None = None) -> TaskScores:
    """Spearman and Pearson of cosine(a_i, b_i) against ``gold`` at every width."""
    from scipy.stats import pearsonr, spearmanr

    gold_arr = np.asarray(gold, dtype=np.float64)
    held, chosen_on = _parts(len(gold_arr), validation)
    out = TaskScores()
    for d in dims:
        cosine = np.sum(_at(a, d) * _at(b, d), axis=1)  # float32, as sentence-transformers' pairwise_cos_sim
        g, c = gold_arr[held], cosine[held]
        out[d] = {"spearman": float(spearmanr(g, c)[0]), "pearson": float(pearsonr(g, c)[0])}
        if resamples is not None:
            out.replicates[d] = spearman_rows(g[resamples], c.astype(np.float64)[resamples])
        if chosen_on is not None:
            gv, cv = gold_arr[chosen_on], cosine[chosen_on]
            out.validation[d] = {"spearman": float(spearmanr(gv, cv)[0])}
            if validation_resamples is not None:
                out.validation_replicates[d] = spearman_rows(gv[validation_resamples],
                                                             cv.astype(np.float64)[validation_resamples])
    return out


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row of ``x`` with the same row of ``y`` (ties get average ranks, as
    ``spearmanr``); NaN where a row is constant."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x, axis=1), rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(rx * ry, axis=1) / np.sqrt(np.sum(rx * rx, axis=1) * np.sum(ry * ry, axis=1))


def resample_counts(resamples: np.ndarray, n: int) -> np.ndarray:
    """How often each of ``n`` items is drawn in each resample: ``(resamples, n)`` counts."""
    counts = np.zeros((len(resamples), n), dtype=np.float64)
    rows = np.repeat(np.arange(len(resamples)), resamples.shape[1])
    np.add.at(counts, (rows, resamples.ravel()), 1.0)
    return counts


def v_measure_rows(counts: np.ndarray, labels: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """V-measure (``v_measure_score``'s, beta 1) of ``clusters`` against ``labels`` for each row of
    item weights ``counts``: the contingency table of each resample from one matrix product."""
    _, lab = np.unique(labels, return_inverse=True)
    _, clu = np.unique(clusters, return_inverse=True)
    n_lab, n_clu = lab.max() + 1, clu.max() + 1
    joint = np.zeros((len(lab), n_lab * n_clu))
    joint[np.arange(len(lab)), lab * n_clu + clu] = 1.0
    table = (counts @ joint).reshape(len(counts), n_lab, n_clu)  # resample × label × cluster
    total = table.sum(axis=(1, 2))[:, None]
    per_label, per_cluster = table.sum(axis=2), table.sum(axis=1)

    def entropy(parts: np.ndarray) -> np.ndarray:
        share = np.where(parts > 0, parts / total, 1.0)
        return -np.sum(np.where(parts > 0, share * np.log(share), 0.0), axis=1)

    def conditional(given: np.ndarray) -> np.ndarray:  # H(one | other): given is the other's totals, broadcast
        ratio = np.where(table > 0, table / np.where(given > 0, given, 1.0), 1.0)
        return -np.sum(np.where(table > 0, table / total[:, :, None] * np.log(ratio), 0.0), axis=(1, 2))

    h_label, h_cluster = entropy(per_label), entropy(per_cluster)
    homogeneity = np.where(h_label > 0, 1 - conditional(per_cluster[:, None, :]) / np.where(h_label > 0, h_label, 1),
                           1.0)
    completeness = np.where(h_cluster > 0,
                            1 - conditional(per_label[:, :, None]) / np.where(h_cluster > 0, h_cluster, 1), 1.0)
    both = homogeneity + completeness
    return np.where(both > 0, 2 * homogeneity * completeness / np.where(both > 0, both, 1), 0.0)


def retrieval(queries: np.ndarray, corpus: np.ndarray, relevant: Sequence[set[int]], dims: Sequence[int], *,
              k: int = 10, resamples: np.ndarray | None = None, validation: np.ndarray | None = None,
              validation_resamples: np.ndarray | None = None) -> TaskScores:
    """MRR, Recall and nDCG at ``k`` per width: the run's own retrieval scorer
    (:func:`mrl_plugins.evaluation.retrieval.score_dims`, the same numbers), the queries the items."""
    from .retrieval import score_dims

    held, chosen_on = _parts(len(relevant), validation)
    scored = score_dims(queries, corpus, relevant, dims, k=k)
    out = TaskScores()
    for d in dims:
        per_query = {m.split("@")[0]: v for m, v in scored.per_query[d].items()}
        out[d] = {m: float(v[held].mean()) for m, v in per_query.items()}
        if resamples is not None:
            out.replicates[d] = per_query["mrr"][held][resamples].mean(axis=1)
        if chosen_on is not None:
            out.validation[d] = {"mrr": float(per_query["mrr"][chosen_on].mean())}
            if validation_resamples is not None:
                out.validation_replicates[d] = per_query["mrr"][chosen_on][validation_resamples].mean(axis=1)
    return out


def undersample(labels: Sequence[str], per_label: int, rng: np.random.RandomState) -> np.ndarray:
    """Indices of at most ``per_label`` texts of each label, after a seeded shuffle (MTEB's
    ``_undersample_data``)."""
    order = np.arange(len(labels))
    rng.shuffle(order)
    counts: dict[str, int] = {}
    kept = []
    for i in order.tolist():
        label = labels[i]
        if counts.get(label, 0) < per_label:
            counts[label] = counts.get(label, 0) + 1
            kept.append(i)
    return np.asarray(kept, dtype=np.int64)


def classification(train: np.ndarray, train_labels: Sequence[str], test: np.ndarray, test_labels: Sequence[str],
                   dims: Sequence[int], *, n_experiments: int = 10, samples_per_label: int = 8, seed: int = 42,
                   max_iter: int = 100, resamples: np.ndarray | None = None,
                   validation: np.ndarray | None = None, validation_resamples: np.ndarray | None = None
                   ) -> TaskScores:
    """Accuracy and macro-F1 of a logistic regression on the embeddings at every width, averaged
    over ``n_experiments`` undersampled training sets (the same sets at every width)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.RandomState(seed)
    samples = [undersample(train_labels, samples_per_label, rng) for _ in range(n_experiments)]
    y_train, y_all = np.asarray(train_labels), np.asarray(test_labels)
    held, chosen_on = _parts(len(y_all), validation)
    y_test = y_all[held]
    out = TaskScores()
    for d in dims:
        x_train, x_test = _at(train, d), _at(test, d)
        accuracy, f1 = [], []
        right = np.zeros(len(y_all))
        for idx in samples:
            clf = LogisticRegression(random_state=seed, max_iter=max_iter)
            clf.fit(x_train[idx], y_train[idx])
            predicted = clf.predict(x_test)
            accuracy.append(accuracy_score(y_test, predicted[held]))
            f1.append(f1_score(y_test, predicted[held], average="macro"))
            right += predicted == y_all
        out[d] = {"accuracy": float(np.mean(accuracy)), "f1": float(np.mean(f1)),
                  "accuracy_sd": float(np.std(accuracy))}
        share = right / len(samples)  # each test text's share of experiments right; their mean is the accuracy
        if resamples is not None:
            out.replicates[d] = share[held][resamples].mean(axis=1)
        if chosen_on is not None:
            out.validation[d] = {"accuracy": float(share[chosen_on].mean())}
            if validation_resamples is not None:
                out.validation_replicates[d] = share[chosen_on][validation_resamples].mean(axis=1)
    return out


def clustering(x: np.ndarray, labels: Sequence[str], dims: Sequence[int], *, runs: int = 10, seed: int = 42,
               batch_size: int = 500, resamples: np.ndarray | None = None,
               validation: np.ndarray | None = None, validation_resamples: np.ndarray | None = None) -> TaskScores:
    """V-measure of mini-batch k-means (as many clusters as labels) at every width, the mean and
    standard deviation over ``runs`` seeds."""
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics import v_measure_score

    n_clusters = len(set(labels))
    all_labels = np.asarray(labels)
    held, chosen_on = _parts(len(all_labels), validation)
    counts = None if resamples is None else resample_counts(resamples, len(held))
    val_counts = (None if validation_resamples is None or chosen_on is None
                  else resample_counts(validation_resamples, len(chosen_on)))
    out = TaskScores()
    for d in dims:
        at = _at(x, d)
        scores, on_validation = [], []
        replicates = np.zeros(0 if counts is None else len(counts))
        val_replicates = np.zeros(0 if val_counts is None else len(val_counts))
        for r in range(runs):
            found = MiniBatchKMeans(n_clusters=n_clusters, batch_size=batch_size, n_init="auto",
                                    random_state=seed + r).fit_predict(at)  # every text clustered; labels unused
            scores.append(v_measure_score(all_labels[held], found[held]))
            if counts is not None:
                replicates = replicates + v_measure_rows(counts, all_labels[held], found[held]) / runs
            if chosen_on is not None:
                on_validation.append(v_measure_score(all_labels[chosen_on], found[chosen_on]))
                if val_counts is not None:
                    val_replicates = val_replicates + v_measure_rows(val_counts, all_labels[chosen_on],
                                                                     found[chosen_on]) / runs
        out[d] = {"v_measure": float(np.mean(scores)), "v_measure_sd": float(np.std(scores))}
        if counts is not None:
            out.replicates[d] = replicates
        if chosen_on is not None:
            out.validation[d] = {"v_measure": float(np.mean(on_validation))}
            if val_counts is not None:
                out.validation_replicates[d] = val_replicates
    return out
