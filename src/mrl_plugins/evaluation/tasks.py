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

NumPy, SciPy and scikit-learn only: no model, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .encode import normalise


def _at(x: np.ndarray, d: int) -> np.ndarray:
    return normalise(np.asarray(x, dtype=np.float32)[:, :d])


def similarity(a: np.ndarray, b: np.ndarray, gold: Sequence[float], dims: Sequence[int]) -> dict[int, dict[str, float]]:
    """Spearman and Pearson of cosine(a_i, b_i) against ``gold`` at every width."""
    from scipy.stats import pearsonr, spearmanr

    gold_arr = np.asarray(gold, dtype=np.float64)
    out: dict[int, dict[str, float]] = {}
    for d in dims:
        cosine = np.sum(_at(a, d) * _at(b, d), axis=1)  # float32, as sentence-transformers' pairwise_cos_sim
        out[d] = {"spearman": float(spearmanr(gold_arr, cosine)[0]), "pearson": float(pearsonr(gold_arr, cosine)[0])}
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
                   max_iter: int = 100) -> dict[int, dict[str, float]]:
    """Accuracy and macro-F1 of a logistic regression on the embeddings at every width, averaged
    over ``n_experiments`` undersampled training sets (the same sets at every width)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.RandomState(seed)
    samples = [undersample(train_labels, samples_per_label, rng) for _ in range(n_experiments)]
    y_train, y_test = np.asarray(train_labels), np.asarray(test_labels)
    out: dict[int, dict[str, float]] = {}
    for d in dims:
        x_train, x_test = _at(train, d), _at(test, d)
        accuracy, f1 = [], []
        for idx in samples:
            clf = LogisticRegression(random_state=seed, max_iter=max_iter)
            clf.fit(x_train[idx], y_train[idx])
            predicted = clf.predict(x_test)
            accuracy.append(accuracy_score(y_test, predicted))
            f1.append(f1_score(y_test, predicted, average="macro"))
        out[d] = {"accuracy": float(np.mean(accuracy)), "f1": float(np.mean(f1)),
                  "accuracy_sd": float(np.std(accuracy))}
    return out


def clustering(x: np.ndarray, labels: Sequence[str], dims: Sequence[int], *, runs: int = 10, seed: int = 42,
               batch_size: int = 500) -> dict[int, dict[str, float]]:
    """V-measure of mini-batch k-means (as many clusters as labels) at every width, the mean and
    standard deviation over ``runs`` seeds."""
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics import v_measure_score

    n_clusters = len(set(labels))
    out: dict[int, dict[str, float]] = {}
    for d in dims:
        at = _at(x, d)
        scores = []
        for r in range(runs):
            found = MiniBatchKMeans(n_clusters=n_clusters, batch_size=batch_size, n_init="auto",
                                    random_state=seed + r).fit_predict(at)
            scores.append(v_measure_score(labels, found))
        out[d] = {"v_measure": float(np.mean(scores)), "v_measure_sd": float(np.std(scores))}
    return out
