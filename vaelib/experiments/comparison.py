"""The comparison the paper invites: every weighted and constrained VAE objective on Ko & Ko's data,
trained at full length in one batched computation and judged by measured sample quality.

Used by the chapter "Comparing the objectives" (Part III). The pieces:

    config = ComparisonConfig()                      the paper's data and network, our training settings
    settings = comparison_settings(config)           one Setting per (method, knob value)
    runs = train(config)                             every setting x every seed: ONE fit_batched call
    rows = evaluate(config, runs)                    per run: R two ways, KL, multiplier, sample quality
    table = summarise(rows)                          per setting: mean and std over the reported seeds
    choice = summarise(rows, selection=True)         ... and over the selection seeds
    best = best_settings(table, "energy", chosen_on=choice)   each knob chosen on other seeds
    noise = noise_levels(config)                     the sample-quality metrics between fresh data draws

The methods (``METHODS``), each a family of objectives over one knob:

* the ELBO, and the beta-VAE over beta (Higgins et al. 2017): a fixed weight on the KL;
* Ko & Ko's eq. 7 (the book's eq. K7) with the reverse, project and ascent rules for its multiplier;
* dual ascent on the KL bound ``KLConstrained`` over delta (the budget of nats per point);
* GECO over kappa (Rezende & Viola 2018): the reconstruction a practitioner asks for;
* the sigma-VAE (Rybkin et al. 2021): the decoder variance fitted in closed form, no knob.

All share the paper's architecture (3-32-2 encoder, parametric tanh), its 10,000 points and 200
epochs, minibatches of 100 and Adam with step 1e-3 (the usual step: unlike Part IV, nothing here
is fitted to the paper's alpha), with every KL averaged over points (the per-point convention in
which beta, delta and GECO are usually stated). ``cooper_cross_check`` trains the dual-ascent run
with the maintained Lagrangian library Cooper and compares.

**Choosing a knob on other seeds.** A method with a knob (beta, delta, kappa) is also trained on
``selection_seeds``, in the same ``fit_batched`` call; its best value is chosen on those runs
(``best_settings(..., chosen_on=summarise(rows, selection=True))``) and reported on ``seeds``, so
that the seeds a claim is tested on did not also pick the setting it is about.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from vaelib import _checks, tables, threads
from vaelib.claims import SeedSummary, separation
from vaelib.data import cosine_surface
from vaelib.engine import fit_batched
from vaelib.evaluation import reconstruction_and_kl
from vaelib.metrics import NoiseLevel, ReferenceSums, cosine_sample_quality, energy_distance, median_bandwidth
from vaelib.models import VAE
from vaelib.objectives import ELBO, GECO, ConstrainedObjective, KLConstrained, KoLagrangian, Objective, SigmaVAE
from vaelib.seeding import seed_everything
from vaelib.tables import Column, render_table
from vaelib.runs import History, TrainingSettings

# The sample-quality metrics of the table, in this order, with their labels and which way is better.
QUALITY = {"surface_distance": ("distance to surface", "lower"), "coverage_distance": ("coverage distance", "lower"),
           "cell_coverage": ("cells covered", "higher"), "mmd2": ("MMD²", "lower"),
           "energy": ("energy distance", "lower")}
FIT = {"recon": "R (sampled z)", "recon_at_mean": "R (z = μ)", "kl": "KL (nats/point)", "alpha": "multiplier"}


@dataclass(frozen=True)
class Method:
    """A family of objectives: ``build(value)`` for each value of its knob (None when it has none)."""

    name: str
    knob: str | None
    values: tuple[float, ...]
    build: Callable[[float | None], Objective]


def _methods(delta: float, geco_rate: float) -> dict[str, Method]:
    return {m.name: m for m in [
        Method("ELBO", None, (), lambda _: ELBO()),
        Method("β-VAE", "β", (0.03, 0.1, 0.3), lambda beta: ELBO(beta=beta)),
        Method("eq. K7, reverse", None, (), lambda _: KoLagrangian(delta, alpha_rule="reverse")),
        Method("eq. K7, project", None, (), lambda _: KoLagrangian(delta, alpha_rule="project")),
        Method("eq. K7, ascent", None, (), lambda _: KoLagrangian(delta, alpha_rule="ascent")),
        Method("KL bound, dual ascent", "δ", (1.0, 3.0, 6.0), lambda d: KLConstrained(d, alpha_rule="ascent")),
        Method("GECO", "κ", (0.03, 0.05, 0.1), lambda kappa: GECO(kappa, rate=geco_rate)),
        Method("σ-VAE", None, (), lambda _: SigmaVAE()),
    ]}


@dataclass(frozen=True)
class ComparisonConfig:
    """Every setting of the comparison.

    ``seeds``: one run per seed and setting (initial weights, data order, noise), the runs the
    tables report; ``selection_seeds``: extra runs of each setting of a method with a knob, on
    which the best knob value is chosen (disjoint from ``seeds``; () for none); ``delta`` is eq.
    7's bound (the paper's 0.1); ``geco_rate`` GECO's step (see ``vaelib.GECO``); ``n_quality``
    the number of samples each model is scored on, against as many fresh data points (coverage
    depends on the count, so every model gets the same); fresh data are drawn with seeds from
    ``fresh_seed`` on, far from the training data's ``data_seed``.
    """

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    selection_seeds: tuple[int, ...] = (5, 6, 7)
    epochs: int = 200
    n_points: int = 10_000
    data_seed: int = 0
    batch_size: int = 100
    lr: float = 1e-3
    hidden: int = 32
    latent_dim: int = 2
    activation: str = "ptanh"
    delta: float = 0.1
    geco_rate: float = 0.03
    n_quality: int = 2_000
    fresh_seed: int = 1_000_000
    methods: tuple[str, ...] | None = None  # None: every method of METHODS

    def __post_init__(self):
        if not self.seeds:
            raise ValueError("seeds is empty; give at least one seed")
        for seed in self.seeds:
            _checks.seed("seeds", seed)
        for seed in self.selection_seeds:
            _checks.seed("selection_seeds", seed)
        shared = sorted(set(self.seeds) & set(self.selection_seeds))
        if shared:
            raise ValueError(f"selection_seeds {shared} are also in seeds; choose a knob on other seeds "
                             "than those it is reported on")
        for name in ("n_points", "hidden", "latent_dim", "n_quality"):
            _checks.positive_int(name, getattr(self, name))
        self.training()  # checks epochs, batch_size and lr
        for name in self.methods or ():
            _checks.one_of("methods", name, METHODS)

    def training(self) -> TrainingSettings:
        """The runs' training settings (each run's seed is its own, handed to ``fit_batched`` apart)."""
        return TrainingSettings(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr)


METHODS = _methods(0.1, 0.03)  # the names and knobs; objectives are built from the config's delta and rate


@dataclass(frozen=True)
class Setting:
    """One objective of the comparison: a method at one value of its knob."""

    method: str
    value: float | None

    @property
    def label(self) -> str:
        knob = METHODS[self.method].knob
        return self.method if knob is None else f"{self.method}, {knob} = {self.value:g}"


@dataclass
class Run:
    setting: Setting
    seed: int
    model: VAE
    objective: Objective
    history: History = field(repr=False)
    selection: bool = False  # a run of ``selection_seeds``: it chooses a knob, the tables do not report it


def comparison_settings(config: ComparisonConfig) -> list[Setting]:
    """Every (method, knob value) of the configured methods, in ``METHODS`` order."""
    names = config.methods or tuple(METHODS)
    return [Setting(name, value) for name in METHODS if name in names for value in (METHODS[name].values or (None,))]


def training_data(config: ComparisonConfig) -> torch.Tensor:
    return cosine_surface(config.n_points, seed=config.data_seed)


def train(config: ComparisonConfig, *, progress: bool = True, backend: str = "auto") -> list[Run]:
    """Every setting with every seed, and every setting of a method with a knob with every
    selection seed too, as one ``fit_batched`` computation; a run's model weights, data order and
    noise come from its seed alone, so each run is what ``vaelib.fit`` would train."""
    methods = _methods(config.delta, config.geco_rate)
    runs = []
    for setting in comparison_settings(config):
        selection = config.selection_seeds if METHODS[setting.method].knob is not None else ()
        for seed in (*config.seeds, *selection):
            seed_everything(seed)
            model = VAE(3, config.latent_dim, (config.hidden,), config.activation)
            runs.append(Run(setting, seed, model, methods[setting.method].build(setting.value), History(),
                            selection=seed in selection))
    histories = fit_batched([r.model for r in runs], [r.objective for r in runs], training_data(config),
                            config.training(), seeds=[r.seed for r in runs], progress=progress, backend=backend)
    for run, history in zip(runs, histories):
        run.history = history
    return runs


def fresh_data(config: ComparisonConfig, offset: int = 0) -> torch.Tensor:
    """n_quality fresh points of the data's distribution, never seen in training."""
    return cosine_surface(config.n_quality, seed=config.fresh_seed + offset)


@torch.no_grad()
def evaluate(config: ComparisonConfig, runs: Sequence[Run]) -> list[dict]:
    """One row per run: its setting and seed; R at a sampled code and at the mean, the KL per
    point and the multiplier (``vaelib.evaluation.reconstruction_and_kl`` on the training data); and
    the sample-quality metrics of ``n_quality`` decoded N(0, I) samples against as many fresh
    points (``vaelib.metrics.cosine_sample_quality``, one kernel bandwidth for all). A selection run
    only chooses a knob, by the energy distance (``best_settings(table, "energy", chosen_on=...)``):
    it is scored on that alone (``vaelib.metrics.energy_distance``, the same estimate), its other
    numbers NaN. The runs are scored on two threads: the metrics are large tensor operations that
    release the GIL."""
    x, fresh = training_data(config), fresh_data(config)
    bandwidth = median_bandwidth(fresh)
    shared = ReferenceSums()  # the fresh data's own pair sums, computed once for every run

    def score(run: Run) -> dict:
        with threads.limited(1):
            samples = run.model.sample(config.n_quality, generator=torch.Generator().manual_seed(run.seed))
            if run.selection:
                fit = dict.fromkeys(("recon_sampled", "recon_mean", "kl"), math.nan)
                quality = {**dict.fromkeys(QUALITY, math.nan),
                           "energy": energy_distance(samples, fresh, reference_sums=shared)}
            else:
                fit = reconstruction_and_kl(run.model, x, seed=run.seed)
                quality = cosine_sample_quality(samples, fresh, seed=run.seed, bandwidth=bandwidth,
                                                reference_sums=shared)
        alpha = run.objective.alpha.item() if isinstance(run.objective, ConstrainedObjective) else math.nan
        return {"method": run.setting.method, "value": run.setting.value, "label": run.setting.label,
                "seed": run.seed, "selection": run.selection, "recon": fit["recon_sampled"],
                "recon_at_mean": fit["recon_mean"], "kl": fit["kl"], "alpha": alpha,
                **{key: quality[key] for key in QUALITY}}

    with ThreadPoolExecutor(max_workers=min(2, threads.cores())) as pool:
        return list(pool.map(score, runs))


def summarise(rows: Sequence[dict], *, selection: bool = False) -> list[dict]:
    """Per setting (in the rows' order): mean and std over seeds of every number, over the
    reported seeds, or with ``selection=True`` over the selection seeds."""
    rows = [row for row in rows if row.get("selection", False) == selection]
    labels = list(dict.fromkeys(row["label"] for row in rows))
    table = []
    for label in labels:
        group = [row for row in rows if row["label"] == label]
        entry = {"method": group[0]["method"], "value": group[0]["value"], "label": label, "seeds": len(group)}
        for key in (*FIT, *QUALITY):
            values = torch.tensor([row[key] for row in group], dtype=torch.float64)
            entry[key] = (values.mean().item(), values.std().item() if len(values) > 1 else math.nan)
        table.append(entry)
    return table


def seed_values(rows: Sequence[dict], label: str, key: str) -> list[float]:
    """One setting's ``key``, one value per reported seed (the selection runs left out), in the
    order of the rows: what ``vaelib.claims`` compares."""
    values = [row[key] for row in rows if row["label"] == label and not row.get("selection", False)]
    if not values:
        raise ValueError(f"no reported run of {label!r}; the labels are "
                         f"{sorted(set(row['label'] for row in rows))}")
    return values


def separations(rows: Sequence[dict], label: str, key: str) -> dict[str, float]:
    """``vaelib.claims.separation`` of one setting's ``key`` against every other setting's, over the
    reported seeds: positive where ``label``'s mean is larger, in combined standard errors."""
    others = [other for other in dict.fromkeys(row["label"] for row in rows) if other != label]
    mine = seed_values(rows, label, key)
    return {other: separation(mine, seed_values(rows, other, key)) for other in others}


def noise_levels(config: ComparisonConfig, repeats: int = 5) -> dict[str, NoiseLevel]:
    """Each sample-quality metric with fresh data in place of a model's samples: the value a perfect
    generator gets, and its spread over ``repeats`` independent draws, at the comparison's sample
    count and kernel (every metric of a draw computed in one ``cosine_sample_quality`` call)."""
    fresh = fresh_data(config)
    bandwidth = median_bandwidth(fresh)
    shared = ReferenceSums()
    with threads.limited():
        scores = [cosine_sample_quality(fresh_data(config, offset=1 + r), fresh, seed=0, bandwidth=bandwidth,
                                        reference_sums=shared)
                  for r in range(repeats)]
    levels = {}
    for key in QUALITY:
        values = torch.tensor([score[key] for score in scores], dtype=torch.float64)
        levels[key] = NoiseLevel(tuple(values.tolist()), values.mean().item(), values.std().item())
    return levels


def best_settings(table: Sequence[dict], metric: str = "mmd2", *,
                  chosen_on: Sequence[dict] | None = None) -> dict[str, dict]:
    """For each method of ``table``, its entry for the setting with the best mean ``metric``.

    With ``chosen_on`` (the summary of the selection runs, ``summarise(rows, selection=True)``) the
    setting is chosen there and its entry in ``table`` returned: a choice made on other seeds than
    those it is reported on. A method that ``chosen_on`` lacks (one without a knob) keeps its
    only setting."""
    _checks.one_of("metric", metric, QUALITY)
    better = min if QUALITY[metric][1] == "lower" else max
    by_label = {entry["label"]: entry for entry in table}
    best: dict[str, dict] = {}
    for method in dict.fromkeys(entry["method"] for entry in table):
        candidates = [e for e in chosen_on or () if e["method"] == method and e["label"] in by_label]
        candidates = candidates or [e for e in table if e["method"] == method]
        best[method] = by_label[better(candidates, key=lambda e: e[metric][0])["label"]]
    return best


def format_table(table: Sequence[dict], noise: dict[str, NoiseLevel] | None = None, style: str = "markdown",
                 keys: Sequence[str] = ("recon", "recon_at_mean", "kl", "alpha", *QUALITY)) -> str:
    """The comparison in a ``vaelib.tables`` style: mean ± std over seeds, with a first row for
    fresh data (the noise level: the best a generator can score) when ``noise`` is given. The
    quality columns are ranked (``vaelib.tables``: the best mean in bold, and every mean the seeds do
    not separate from it); the noise level is not, and the page's caption says so (``legend``)."""
    columns = {**{k: Column(v) for k, v in FIT.items()}, **{k: Column(*v) for k, v in QUALITY.items()}}
    rows: list[list[object]] = []
    if noise is not None:
        rows.append(["fresh data (noise level)",
                     *(SeedSummary(noise[k].mean, noise[k].std, len(noise[k].values)) if k in noise else ""
                       for k in keys)])
    for entry in table:
        rows.append([entry["label"], *((*entry[key], entry["seeds"]) for key in keys)])
    return render_table(["objective", *(columns[k] for k in keys)], rows, style,
                        reference_rows=[0] if noise is not None else [])


def legend(keys: Sequence[str] = tuple(QUALITY), noise: bool = True) -> str:
    """The sentence a page's caption adds under ``format_table``'s table: its arrows and marks."""
    columns = [Column(*QUALITY[k]) if k in QUALITY else Column(FIT[k]) for k in keys]
    return tables.legend(columns, reference=["fresh data (noise level)"] if noise else [])


# Colours and markers of the methods in the figures: the Okabe-Ito palette without its yellow.
STYLE = {"ELBO": ("#0072B2", "o"), "β-VAE": ("#E69F00", "s"), "eq. K7, reverse": ("#009E73", "D"),
         "eq. K7, project": ("#D55E00", "^"), "eq. K7, ascent": ("#CC79A7", "v"),
         "KL bound, dual ascent": ("#56B4E9", "<"), "GECO": ("#000000", "P"), "σ-VAE": ("#7F7F7F", "*")}


def tradeoff_figure(table: Sequence[dict], noise: dict[str, NoiseLevel],
                    metrics: Sequence[str] = ("energy", "surface_distance")):
    """Reconstruction against sample quality: one panel per metric (stacked, to stay readable at
    a page's width), each method a curve over its knob (a point where it has none), error bars one
    std over seeds, and the value fresh data get (the noise level) as a grey band (mean ± 2 std).
    4.6 inches wide, the book's width for a phone, with one legend under the panels."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(metrics), 1, figsize=(4.6, 3.4 * len(metrics) + 1.6), squeeze=False,
                             layout="constrained")
    for ax, metric in zip(axes[:, 0], metrics):
        for method in dict.fromkeys(e["method"] for e in table):
            entries = [e for e in table if e["method"] == method]
            color, marker = STYLE.get(method, ("#0072B2", "o"))
            ax.errorbar([e["recon"][0] for e in entries], [e[metric][0] for e in entries],
                        xerr=[e["recon"][1] for e in entries], yerr=[e[metric][1] for e in entries],
                        marker=marker, ms=9 if marker == "*" else 6, color=color, capsize=2,
                        ls="-" if len(entries) > 1 else "none", label=method)
            knob = METHODS[method].knob
            for e in entries if knob is not None else ():
                ax.annotate(f"{knob}={e['value']:g}", (e["recon"][0], e[metric][0]), fontsize=9, color=color,
                            xytext=(4, -11), textcoords="offset points")
        level = noise[metric]
        low = max(level.mean - 2 * level.std, level.mean / 10)
        ax.axhspan(low, level.mean + 2 * level.std, color="0.85", zorder=0, label="fresh data, mean ± 2 std")
        ax.set(xscale="log", yscale="log", xlabel="R at a sampled code (log scale)",
               ylabel=f"{QUALITY[metric][0]}\n({QUALITY[metric][1]} is better)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=9)
    return fig


def sample_clouds(runs: Sequence[Run], labels: Sequence[str], data: torch.Tensor, n: int = 2_000):
    """Side views (radius against height, ``vaelib.plots.radial_profiles``) of n samples from the
    first reported run (lowest seed) of each labelled setting, after n points of the data: two
    panels a row, 4.6 inches wide, each titled by its method with the knob's value below."""
    import numpy as np

    from vaelib.plots import radial_profiles

    clouds, colours = {"the data": data[:n]}, ["0.45"]
    for label in labels:
        run = min((r for r in runs if r.setting.label == label and not r.selection), key=lambda r: r.seed)
        title = "\n".join(label.rsplit(", ", 1)) if METHODS[run.setting.method].knob else label
        clouds[title] = run.model.sample(n, generator=torch.Generator().manual_seed(run.seed))
        colours.append(STYLE.get(run.setting.method, ("#0072B2", "o"))[0])
    fig = radial_profiles(clouds, surface=np.cos, columns=2)
    for ax, colour in zip(fig.axes, colours):  # each method in its colour of tradeoff_figure
        ax.collections[0].set_color(colour)
    for ax in fig.axes:  # the book's names of a point's coordinates, x = (x_1, x_2, x_3)
        ax.set(xlabel="radius $r$" if ax.get_xlabel() else "", ylabel="height $x_3$" if ax.get_ylabel() else "")
    legend = fig.axes[0].get_legend()
    for text in legend.get_texts() if legend is not None else ():
        text.set_fontsize(9)  # the book's smallest size
    fig.set_size_inches(4.6, 2.4 * -(-len(clouds) // 2))
    return fig


# ----------------------------------------------------------------------------------------------
# Cooper cross-check
# ----------------------------------------------------------------------------------------------

def cooper_cross_check(delta: float = 1.0, *, n_points: int = 1_000, epochs: int = 5, batch_size: int = 100,
                       lr: float = 1e-3, seed: int = 0) -> dict[str, float]:
    """Train the same VAE with dual ascent on KL <= delta twice: with vaelib (``KLConstrained``,
    ``vaelib.fit``) and with Cooper (Gallego-Posada et al.), the maintained PyTorch library for
    Lagrangian constrained optimisation, given the same problem (R subject to KL - delta <= 0), the
    same initial weights, data order and noise, Adam on the network and Adam ascent on the
    multiplier with projection onto >= 0 (Cooper's simultaneous gradient descent-ascent).

    Returns both final multipliers, the largest difference between the two networks' parameters
    and the relative difference of the final losses. Adam on the multiplier with its gradient
    negated (vaelib) and Adam with ``maximize=True`` (Cooper) are the same arithmetic, so the two
    agree to float32 rounding.
    """
    import cooper

    from vaelib.train import fit

    x = cosine_surface(n_points, seed=seed)
    seed_everything(seed)
    ours = VAE(3, 2, (32,), "ptanh")
    objective = KLConstrained(delta, alpha_rule="ascent")
    fit(ours, objective, x, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=False)

    seed_everything(seed)
    theirs = VAE(3, 2, (32,), "ptanh")
    problem = _cooper_kl_bound(theirs, delta)
    optimizer = cooper.optim.SimultaneousOptimizer(
        cmp=problem, primal_optimizers=torch.optim.Adam(theirs.parameters(), lr=lr, foreach=True),
        dual_optimizers=torch.optim.Adam(problem.dual_parameters(), lr=lr, maximize=True, foreach=True))
    order_rng = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the reparameterisation noise, drawn as vaelib.fit draws it
        for _ in range(epochs):
            for index in torch.randperm(n_points, generator=order_rng).split(batch_size):
                optimizer.roll(compute_cmp_state_kwargs={"x": x[index]})
    difference = max((a - b).abs().max().item() for a, b in zip(ours.parameters(), theirs.parameters()))
    ours_scores, theirs_scores = reconstruction_and_kl(ours, x), reconstruction_and_kl(theirs, x)
    return {"alpha_vaelib": objective.alpha.item(), "alpha_cooper": problem.multiplier.weight.item(),
            "max_parameter_difference": difference,
            "kl_vaelib": ours_scores["kl"], "kl_cooper": theirs_scores["kl"],
            "recon_vaelib": ours_scores["recon_sampled"], "recon_cooper": theirs_scores["recon_sampled"]}


def _cooper_kl_bound(model: VAE, delta: float):
    """Cooper's formulation of "minimise R subject to KL - delta <= 0" for ``model`` (built lazily:
    Cooper is imported only by the cross-check)."""
    import cooper

    from vaelib.objectives import kl_term, reconstruction_term

    class KLBound(cooper.ConstrainedMinimizationProblem):
        def __init__(self):
            super().__init__()
            self.multiplier = cooper.multipliers.DenseMultiplier(num_constraints=1, init=torch.ones(1))
            self.constraint = cooper.Constraint(multiplier=self.multiplier,
                                                constraint_type=cooper.ConstraintType.INEQUALITY,
                                                formulation_type=cooper.formulations.Lagrangian)

        def compute_cmp_state(self, x: torch.Tensor) -> cooper.CMPState:
            out = model(x)
            violation = (kl_term(out) - delta).reshape(1)
            return cooper.CMPState(loss=reconstruction_term(x, out),
                                   observed_constraints={self.constraint: cooper.ConstraintState(violation=violation)})

    return KLBound()
