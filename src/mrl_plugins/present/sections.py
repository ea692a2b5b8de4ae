"""The sections of a run's report, each defined once from :class:`RunResults` and rendered as
console text, Markdown (``report.md``), part of the model card, or the demo's summary.

A section is data: a title, an optional explanation and plot, a table of strings, and sentences.
Deciding anything (which width keeps what, which configuration is cheapest) is left to
:mod:`mrl_plugins.evidence.decisions`; this module only words what they return.
"""

from __future__ import annotations

from ..evaluation.metrics import METRICS, Metric
from ..evidence.decisions import (
    ServingDecision,
    adaptor_gates,
    basis,
    chosen_point,
    column_choice,
    recommended_widths,
    serving_decision,
    width_choice,
)
from ..evidence.results import KEEP_SHARES, MRL, PRIMARY, RunResults, share_label
from ..indexes import FASTER_THAN_EXACT
from .blocks import Section, Table
from .costs import describe, front_sentence, quality_versus_cost, speed
from .scaling import scaling_section
from .tasks import task_sections


def storage(dim: int, vectors: int = 1_000_000) -> str:
    """float32 storage of ``vectors`` embeddings of ``dim`` dimensions."""
    size = dim * 4 * vectors
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


def title(results: RunResults, metric: Metric) -> str:
    return f"{metric.title}@{results.k}"


# -- quality per width ---------------------------------------------------------------------------
def metric_table(results: RunResults, metric: Metric) -> Table:
    """Per dimension: storage, then ``value (retention)`` per quality column."""
    columns = results.quality_columns()
    rows = []
    for d in results.dims:
        cells = [str(d), storage(d)]
        for key in columns:
            value, kept = results.value(key, d, metric), results.retention(key, d, metric)
            cells.append(f"{value:.4f} ({kept:.1%})" if kept is not None else f"{value:.4f}")
        rows.append(cells)
    return Table(["dim", "float32 / 1M vectors", *(m.label for m in columns.values())], rows)


def metric_section(results: RunResults, metric: Metric) -> Section:
    return Section(f"metric:{metric.value}", title(results, metric),
                   console_title=f"{title(results, metric)}  (value and retention vs. the same model's "
                                 f"{results.full_dim}-dim score)",
                   table=metric_table(results, metric))


def smallest_keeping(results: RunResults, metric: Metric = PRIMARY) -> Section:
    """Per column: the smallest dimension keeping each share of its own full-dimension score."""
    shares = sorted(KEEP_SHARES)
    rows = []
    columns = results.quality_columns()
    best = max(results.value(key, results.full_dim, metric) for key in columns)
    for key, m in columns.items():
        kept = (results.smallest_dim_keeping(key, s, metric) for s in shares)
        full = results.value(key, results.full_dim, metric)
        share_of_best = f"{full / best:.1%}" if best else "-"
        rows.append([m.label, *(str(d) if d else "-" for d in kept), f"{full:.4f}", share_of_best])
    # retention is a share of the column's own full width: one whose full width dropped (an adaptor) looks better
    # by it than it is, so its full width is shown against the best full-width score of the run beside it
    header = ["model", *(f"smallest dim ≥ {share_label(s)}" for s in shares), f"full-dim {metric.key(results.k)}",
              "full-dim vs best"]
    return Section("smallest", f"Smallest dimension keeping {title(results, metric)}", table=Table(header, rows))


# -- uncertainty ---------------------------------------------------------------------------------
UNCERTAINTY_NOTE = (
    "95% bootstrap intervals over the evaluation queries; after each interval, the difference from the reference "
    "column named in the heading (the MRL model the run trained, warm-started when the recipe warm-starts) at that "
    "width, marked * when a paired sign-flip test over the same queries finds it significant "
    "(p < 0.05) and ≈ when it does not. Every number is one training run: see the seeds table, when there is "
    "one, for how much another seed moves them."
)


def uncertainty_table(results: RunResults, metric: Metric = PRIMARY) -> Table | None:
    """Per column and dimension: the value, its 95% interval, and its difference from MRL, marked
    ``*`` when the paired test finds it significant (p < 0.05) and ``≈`` when it does not."""
    from ..evidence.stats import ALPHA

    columns = {k: m for k, m in results.models.items() if m.intervals}
    if not columns:
        return None
    rows = []
    for key, m in columns.items():
        cells = [m.label]
        for d in results.dims:
            interval = results.interval(key, d, metric)
            assert interval is not None  # the columns of this table have intervals
            low, high = interval
            cell = f"{results.value(key, d, metric):.3f} [{low:.3f}, {high:.3f}]"
            p = results.p_value(key, d, metric)
            if key != MRL and p is not None and MRL in results.models:
                delta = results.value(key, d, metric) - results.value(MRL, d, metric)
                cell += f" {delta:+.3f} {'*' if p < ALPHA else '≈'}"
            cells.append(cell)
        rows.append(cells)
    return Table(["column", *(f"{d} dims" for d in results.dims)], rows)


def without_intervals(results: RunResults) -> str | None:
    """A line naming the columns the uncertainty table leaves out, and why (a comparison plugin
    that returned its own means, without per-query scores, cannot be given intervals or tests)."""
    if not any(m.intervals for m in results.models.values()):
        return None
    why: dict[str, list[str]] = {}
    for m in results.models.values():
        if not m.intervals:
            why.setdefault(m.no_intervals or "computed without per-query scores (a comparison that returns its own "
                           "means rather than scoring through the run's scorer)", []).append(m.label)
    if not why:
        return None
    return " ".join(f"No intervals or tests for {', '.join(labels)}: {reason}." for reason, labels in why.items())


def uncertainty(results: RunResults) -> Section | None:
    table = uncertainty_table(results)
    if table is None:
        return None
    missing = without_intervals(results)
    reference = results.models[MRL].label if MRL in results.models else "MRL"
    return Section("uncertainty", f"Which differences are real ({title(results, PRIMARY)}, reference: {reference})",
                   console_title=f"{title(results, PRIMARY)} with 95% intervals; vs {reference}: * significant, ≈ not "
                                 "(paired test)", note=UNCERTAINTY_NOTE, table=table,
                   after=[missing] if missing else [])


def seeds(results: RunResults, metric: Metric = PRIMARY) -> Section | None:
    from ..evidence.stats import mean_sd

    runs = results.seed_columns()
    if not runs:
        return None
    rows = []
    for d in results.dims:
        values = [m.metrics[d][metric.key(results.k)] for m in runs]
        mean, sd = mean_sd(values)
        rows.append([str(d), f"{mean:.4f} ± {sd:.4f}", *(f"{v:.4f}" for v in values)])
    header = ["dim", f"mean ± sd over {len(runs)} seeds", *(m.label for m in runs)]
    return Section("seeds", f"Across training seeds ({title(results, PRIMARY)} of MRL)",
                   console_title=f"{title(results, PRIMARY)} of MRL across training seeds", table=Table(header, rows))


SAVED_NOTE = "Models saved by comparisons (publish one with `mrl-run publish OUTPUT_DIR --model PATH`):"


def saved_models(results: RunResults) -> Section | None:
    """The models comparisons saved (the adaptor's), with their paths in the run folder."""
    saved = [(column.label, column.saved_model) for column in results.models.values() if column.saved_model]
    if not saved:
        return None
    return Section("saved", "Saved models", console_title=SAVED_NOTE.replace("`", ""), note=SAVED_NOTE,
                   lines=[f"{label}: `{path}`" for label, path in saved], console_indent="  ")


# -- choices -------------------------------------------------------------------------------------
def serving_rule(decision: ServingDecision, full_dim: int) -> str:
    """How the serving choice was made, in words: the rule, or, when exact search is the choice,
    why nothing cheaper was (within noise of the share, not clearly faster, or both)."""
    share = share_label(decision.share)
    if decision.point.is_exact(full_dim):
        why = (" beyond noise" if decision.within_noise else "") + (
            f" and is clearly faster than exact search (at most {FASTER_THAN_EXACT:.0%} of its time)"
            if decision.slower or not decision.within_noise else "")
        return f"no setting on the Pareto front keeps ≥ {share} of exact quality{why}, so exact search"
    return (f"on the Pareto front, least memory keeping ≥ {share} of exact quality, at most "
            f"{FASTER_THAN_EXACT:.0%} of exact search's time")


def chosen_on(results: RunResults) -> str:
    """On which data the run's choices rest, in words."""
    data = results.data
    if results.chosen_on == "validation":
        return (f"chosen on the validation split ({data.validation_queries:,} queries, {data.validation_corpus:,} "
                "documents, neither trained nor evaluated on), reported held out")
    return ("chosen on the evaluation set itself: this run has no validation split ([validation] queries = 0, or a "
            "run written before mrl-plugins 0.3), so each choice is flattered by the luck of the queries it is "
            "reported on")


def _dims_text(dims: list[int], deltas: dict[int, float]) -> str:
    return ", ".join(f"{d} ({deltas[d]:+.3f})" for d in dims)


def choices(results: RunResults) -> Section | None:
    """Every choice the run makes, the data it was made on, and what it scored held out."""
    if MRL not in results.models:
        return None
    on, lines = basis(results, MRL), []
    mrl_label, metric = results.models[MRL].label, title(results, PRIMARY)
    for share, d in sorted(recommended_widths(results).items(), reverse=True):
        kept, held = on.retention(MRL, d) or 0.0, results.retention(MRL, d) or 0.0
        where = f"{kept:.1%} on validation; {held:.1%} held out" if results.chosen_on == "validation" else f"{held:.1%}"
        width = width_choice(results, share)
        noise = (f"; {width.by_mean} keeps {on.retention(MRL, width.by_mean) or 0.0:.1%} on validation, within noise "
                 f"of {share_label(share)} (p = {width.noise.p:.2f})" if width.noise and width.by_mean != d else "")
        lines.append(f"Smallest width keeping ≥ {share_label(share)} of {mrl_label}'s full-width {metric}: **{d}** "
                     f"({where}{noise}).")
    decision = serving_decision(results)
    if decision is not None:
        share, point = decision.share, decision.point
        twin = chosen_point(results, point)
        there = f"{twin.kept:.1%} on validation, " if twin is not None and results.chosen_on == "validation" else ""
        how = serving_rule(decision, results.full_dim)
        lines.append(f"To serve ({how}; {there}held out {point.kept:.1%}): {describe(point, results)}.")
        if decision.slower:
            size = results.chosen_corpus
            slow = "; ".join(f"{p.label} at {p.dim} ({p.kept:.1%}, {p.ratio_single:.2f}× exact's time)"
                             for p in decision.slower[:3])
            more = f" and {len(decision.slower) - 3} more" if len(decision.slower) > 3 else ""
            lines.append(f"Settings that keep the share with less memory are not clearly faster than exact search one "
                         f"query at a time on the {size:,} documents they were measured on (more than "
                         f"{FASTER_THAN_EXACT:.0%} of its time: slower, or within timing noise), so they are not to "
                         f"serve at that size: {slow}{more}. At this size exact search is the answer to beat; for a "
                         "larger corpus, see how the settings scale below, and let `mrl-run index` tune on the corpus "
                         "itself.")
        if decision.within_noise:
            passed = "; ".join(f"{p.label} at {p.dim} ({p.kept:.1%}, p = {m.p:.2f})"
                               for p, m in decision.within_noise[:3])
            more = f" and {len(decision.within_noise) - 3} more" if len(decision.within_noise) > 3 else ""
            lines.append(f"Cheaper settings keep the share on validation, but within noise, so they were passed over: "
                         f"{passed}{more}.")
        front = front_sentence(results)
        if front:
            lines.append(front)
    gates = adaptor_gates(results)
    for gate in gates:
        column, model = results.models[gate.column], results.models[gate.model].label
        facts = column.facts
        basis_words = str(facts.get("epochs_chosen_on") or "")
        epoch = (f"stopping epoch {facts['epochs']}, chosen {'by' if 'cross' in basis_words else 'on'} {basis_words}; "
                 if basis_words else "")
        cost = (f"fitted in {facts['fit_seconds']:.1f} s after {facts['encode_seconds']:.1f} s encoding its "
                f"{facts['fit_texts']:,} texts" if "fit_seconds" in facts else "")
        how = f" ({epoch}{cost})" if epoch or cost else ""
        use = (f"use the adapted embedding at {', '.join(map(str, gate.helps))} dims only" if gate.helps and gate.hurts
               else "use it at every width" if gate.helps else f"do not use it: {model} alone is as good or better")
        if gate.noise:
            use += (f" (ahead only within noise at {', '.join(map(str, gate.noise))}: used there all the same, as it "
                    "costs no more to serve)")
        where = f"by {gate.cross_validated}" if gate.cross_validated else f"on {results.chosen_on}"
        lines.append(
            f"{column.label}{how}: {where} it beats {model} at "
            f"{_dims_text(gate.helps, gate.validation_delta) or 'no width'} and not at "
            f"{_dims_text(gate.hurts, gate.validation_delta) or 'any other'}; {use}. Held out: "
            f"{_dims_text(results.dims, gate.held_out_delta)}."
        )
    parts = []
    for d in results.dims:
        publish = column_choice(results, d)
        there = f"{on.value(publish.column, d):.4f} on validation, " if results.chosen_on == "validation" else ""
        noise = (f"; ahead of {results.models[MRL].label} only within noise, p = {publish.noise.p:.2f}"
                 if publish.noise else "")
        parts.append(f"{d}: {results.models[publish.column].label} ({there}{results.value(publish.column, d):.4f} "
                     f"held out{noise})")
    lines.append(f"The model to publish for each width (best {metric} among the models the run can publish): "
                 + "; ".join(parts) + ".")
    return Section("choices", "What the run chooses", console_title=f"What the run chooses ({chosen_on(results)})",
                   note=f"Every choice below is {chosen_on(results)}" + (
                       ", but for the adaptors whose lines say they chose by cross-validation over the training "
                       "side." if any(g.cross_validated for g in gates) else "."), lines=lines)


CHECKS_NOTE = (
    "Each choice made on validation, measured on the held-out queries beside the best option the run had there: "
    "the difference (for a width or a setting: its per-query score minus the share of exact it was chosen for), * "
    "when a paired sign-flip test finds it significant (p < 0.05), ≈ when it does not. A choice does not hold when "
    "it is significantly worse held out."
)


def checks_section(results: RunResults) -> Section | None:
    """Did the choices hold? (``results.checks``, computed by the run: :mod:`mrl_plugins.evidence.agreement`)."""
    from ..evidence.stats import ALPHA

    if not results.checks:
        return None
    rows, warnings = [], []
    for c in results.checks:
        share = c.choice.startswith(("width", "to serve"))
        value = (lambda v: f"{v:.1%}") if share else (lambda v: f"{v:.4f}")
        alternative = (f"{c.alternative}: {value(c.alternative_held_out)}"
                       if c.alternative is not None and c.alternative_held_out is not None else "-")
        test = f"{c.delta:+.3f} {'*' if (c.p or 1.0) < ALPHA else '≈'}" if c.delta is not None else "-"
        rows.append([c.choice, c.chosen, value(c.held_out), alternative, test, "yes" if c.holds else "**no**"])
        if not c.holds:
            warnings.append(f"Did not hold: {c.choice}: {c.chosen} is significantly worse held out "
                            f"({c.delta:+.3f}, p = {c.p:.3f})" + (f" than {c.alternative}." if c.alternative else "."))
    held = sum(c.holds for c in results.checks)
    lines = [f"{held} of {len(results.checks)} choices held out.", *warnings]
    return Section("checks", "Did the choices hold?", note=CHECKS_NOTE, lines=lines, bullets=False,
                   table=Table(["choice", "chosen", "held out", "best alternative held out", "difference", "holds"],
                               rows))


TESTS_NOTE = (
    "At each width, the model the run would publish (best on validation) against plain MRL and against the "
    "strongest other post-hoc column (best on validation), held out: the difference in MRR, * when a paired "
    "sign-flip test over the evaluation queries finds it significant (p < 0.05), ≈ when it does not."
)


def tests_section(results: RunResults) -> Section | None:
    """The paired tests a reader needs to believe the per-width recommendation."""
    from ..evidence.stats import ALPHA

    if not results.tests:
        return None
    rows = []
    for d in results.dims:
        found = {t.role: t for t in results.tests if t.dim == d}
        if not found:
            continue
        column = next(iter(found.values())).column

        def cell(role: str, found: dict = found) -> str:
            t = found.get(role)
            if t is None:
                return "-"
            return f"{results.models[t.against].label}: {t.delta:+.3f} {'*' if t.p < ALPHA else '≈'} (p = {t.p:.3f})"

        rows.append([str(d), results.models[column].label, cell("plain MRL"), cell("strongest alternative")])
    return Section("tests", f"Is the recommendation better? ({title(results, PRIMARY)})", note=TESTS_NOTE,
                   table=Table(["dim", "recommended", "vs plain MRL", "vs strongest alternative"], rows))


def trial_note(results: RunResults) -> Section | None:
    """A sweep trial's report says first that nothing in it is held out."""
    if results.trial is None:
        return None
    t = results.trial
    params = ", ".join(f"{k} = {v}" for k, v in t.get("params", {}).items())
    return Section("trial", "Sweep trial", lines=[
        f"Trial {t.get('number')} of sweep '{t.get('study')}' ({params}): every number in this report is on the "
        f"validation split ({results.data.validation_queries:,} queries); the evaluation set was not scored."],
        bullets=False)


def training_curves(results: RunResults) -> Section | None:
    """Per trained model: its training loss and, where scored during training, its validation curve."""
    key = PRIMARY.key(results.k)
    rows = []
    for model, facts in results.train.items():
        if not facts.losses and not facts.curve:
            continue
        label = results.models[model].label if model in results.models else model
        points = facts.curve or [{"step": step} for step, _ in facts.losses[-1:]]
        for point in points:
            losses = [loss for step, loss in facts.losses if step <= point["step"]]
            scores = {int(d): v for d, v in point.get(key, {}).items()}  # JSON keeps dimensions as strings
            rows.append([label, str(point["step"]), f"{losses[-1]:.4f}" if losses else "-",
                         *(f"{scores[d]:.4f}" if d in scores else "-" for d in results.dims)])
    if not rows:
        return None
    metric = f"{PRIMARY.title}@{results.k}"
    header = ["model", "step", "training loss", *(f"validation {metric} at {d}" for d in results.dims)]
    return Section("training", "Training", note="The training loss as the trainer logged it (the last value before "
                   "each step shown) and, with [validation] eval_steps, each model's validation score during training.",
                   table=Table(header, rows))


def report_sections(results: RunResults) -> list[Section]:
    """Every section of the report, in order; those with nothing to show are left out."""
    found = [s for s in (trial_note(results),) if s is not None]
    found += [metric_section(results, m) for m in METRICS]
    found += [smallest_keeping(results), *task_sections(results)]
    found += [s for s in (choices(results) if results.trial is None else None, checks_section(results),
                          tests_section(results), training_curves(results)) if s]
    found += [s for s in (speed(results), quality_versus_cost(results), scaling_section(results), uncertainty(results),
                          seeds(results),
                          saved_models(results)) if s is not None]
    return found
