"""Ko & Ko's experiment: their Lagrangian objective (eq. 7) against the ELBO (eq. 6), Table 1 and Figure 1.

The pieces are separate so that another way of training the runs can replace the training and
reuse the rest:

    config = Ko2023Config(...)                          every open choice, with a documented default
    x = make_data(config)                               the 3-D noisy cosine data
    specs = run_specs(config)                           one RunSpec(objective, seed) per run
    trained = RUNNERS[config.runner](config, x, specs, progress)     -> list[TrainedRun]
    result = summarise(config, x, trained)              evaluation, table, samples for Figure 1
    result.save("results/")                             table1.json and figure1.png, written as one group

``reproduce(config)`` does all of it. A *runner* is any function
``runner(config, x, specs, progress=True) -> list[TrainedRun]`` that trains one run per spec and
returns them in the order of ``specs``; each run starts from ``initial_run(config, spec)``, so that
every runner starts from the same weights and the same objective. ``train_runs_loop`` (``"loop"``)
trains the runs one after the other with ``vaelib.fit``; ``train_runs_batched`` (``"batched"``, the
default) trains them all as one computation with ``vaelib.fit_batched``: the same numbers up to
floating-point rounding, in seconds instead of minutes. A runner that can resume also takes
``state_dir``, a folder for its checkpoints that it continues from when they exist; ``reproduce``
passes it when asked to keep a state (``reproduce(..., state_dir=..., resume=...)``). Both hand the
configuration's training settings to the trainer as one ``vaelib.TrainingSettings``
(``Ko2023Config.training``). (The runner was called the *engine* before that word was kept for
``vaelib.engine``: ``Ko2023Config(engine=...)``, ``config.engine``, ``ENGINES`` and the command
line's ``--engine`` still work, and a state saved under the old name resumes.)

For the book's analysis: ``train_objective`` and ``sweep`` train one objective under changed
settings and give its Table 1 row; ``linear_vae_optimum`` predicts from the data's variances whether
the ELBO collapses; ``figure1_quality`` measures Figure 1's samples and ``step_size_figure`` shows the
step size's role.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import InitVar, asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from vaelib import _checks, _io, limits, plots, tables
from vaelib.data import COSINE_HALF_WIDTH, COSINE_NOISE, cosine_surface
from vaelib.engine import fit_batched
from vaelib.claims import mean_std
from vaelib.evaluation import reconstruction_and_kl
from vaelib.metrics import BETTER, ReferenceSums, cosine_sample_quality, median_bandwidth
from vaelib.models import VAE
from vaelib.nn import ACTIVATIONS
from vaelib.objectives import ALPHA_RULES, ELBO, KL_REDUCTIONS, KoLagrangian, Objective
from vaelib.pca import fit_pca
from vaelib.seeding import seed_everything
from vaelib.tables import Column, as_printed, render_table
from vaelib.runs import History, TrainingSettings, check_lr
from vaelib.train import fit

OBJECTIVES = ("proposed", "elbo")
# Figure 1's clouds are scored on this many points against fresh data drawn with seed + FRESH_DATA_SEED.
QUALITY_POINTS = 2_000
FRESH_DATA_SEED = 1_000_000
QUALITY_LABELS = {"surface_distance": "distance to surface", "coverage_distance": "coverage distance",
                  "cell_coverage": "cells covered", "mmd2": "MMD²", "energy": "energy distance"}
QUALITY_COLUMNS = [Column(label, BETTER[key]) for key, label in QUALITY_LABELS.items()]  # ranked: lower or higher
INITS = ("pytorch", "xavier")
# The paper's eq. 7 is the book's eq. K7 (its equations carry a K); its eq. 6 is the ELBO.
OBJECTIVE_LABELS = {"proposed": "proposed (eq. K7)", "elbo": "ELBO"}
# The rows of Figure 1's quality table: a second fresh draw of the data, then each objective's samples.
CLOUD_LABELS = {"data": "fresh data", **OBJECTIVE_LABELS}
# The columns of Table 1, in the paper's order; the ELBO row has only the first two.
COLUMNS = {"recon": "R (sampled z)", "recon_at_mean": "R (z = μ)", "kl": "KL (nats)", "weighted_recon": "(1+α)·R",
           "weighted_kl": "α·KL (nats)", "alpha": "α"}
COLUMNS_OF = {"proposed": tuple(COLUMNS), "elbo": ("recon", "recon_at_mean", "kl")}

# Ko & Ko's Table 1: mean and standard deviation over 10 runs of 200 epochs.
PAPER_TABLE1 = {
    "proposed": {"recon": {"mean": 0.009, "std": 0.002}, "kl": {"mean": 56832.0, "std": 2740.0},
                 "weighted_recon": {"mean": 0.009, "std": 0.002}, "weighted_kl": {"mean": 10.53, "std": 13.9},
                 "alpha": {"mean": 0.00018, "std": 0.0002}},
    "elbo": {"recon": {"mean": 1.67, "std": 0.0005}, "kl": {"mean": 0.028, "std": 0.025}},
}


@dataclass(frozen=True)
class Ko2023Config:
    """Every setting of the experiment. The paper fixes some; the others are our documented choices.

    Fixed by the paper: 10,000 points of 3-D noisy cosine data, one hidden layer of 32 units with
    the parametric tanh in encoder and decoder, a 2-D latent, delta = 0.1, alpha starting at 1 and
    trained by the network's optimiser (kept >= 0 by reversing its step), 200 epochs, 10 runs.

    Left open by the paper, with our defaults:

    * data: ``vaelib.data.cosine_surface``, z = cos(sqrt(x^2 + y^2)) on the square
      [-half_width, half_width]^2 plus Gaussian noise of std ``noise`` on all three coordinates.
      Total variance about 1.66: the paper's collapsed ELBO row (R = 1.67 = the total variance of
      the data) pins the scale.
    * ``kl_reduction="sum"``: eqs. 6 and 7 put 1/n in front of the squared error only, so their KL
      is that of the whole batch's posterior: the per-point KL *summed* over the batch in training
      and over all n points in Table 1. This literal reading reproduces the paper's magnitudes (a
      KL of ~57,000 is ~5.7 nats per point times 10,000 points; an ELBO that collapses). ``"mean"``
      averages the KL over points like R, the per-point ELBO of Kingma & Welling; on this data its
      ELBO does not collapse (see the book's Part IV).
    * ``optimizer="adam"``, ``lr=2e-4``: the step size is read off the paper's alpha column. Once
      alpha reaches 0, every Adam step on it has size about lr and the reversal rule reflects the
      ones that go below 0, so alpha ends within about one step of 0: over lr in [1e-4, 1e-3] our
      runs end with alpha between about 0.6·lr and 1.4·lr on average. The paper's alpha = 0.00018
      thus points to lr of about 2e-4 rather than Adam's usual 1e-3 (with which alpha ends near
      6e-4 to 8e-4 and R, about noise^2 + alpha·batch_size, is ten times the paper's 0.009). A
      smaller lr also delays the escape from the collapse that eq. 7 starts in while alpha is
      large: about 20 epochs at 1e-3, 70 at 2e-4.
    * ``batch_size=100``: Kingma & Welling's minibatch size M = 100.
    * ``init="pytorch"``: PyTorch's default initialisation (``"xavier"``: Glorot-uniform weights, zero biases).
    * ``seed``: the data set is drawn with ``seed``; run i of each objective uses ``seed + i`` for
      its initial weights, data order and sampling noise (both objectives share the seeds).
    * ``n_samples``: points decoded from N(0, I) for Figure 1 (the paper's 10,000).
    * ``runner``: how the runs are trained, a key of ``RUNNERS`` (``"batched"``: all at once with
      ``vaelib.fit_batched``; ``"loop"``: one at a time with ``vaelib.fit``, the reference).
      ``engine`` is its former name, still accepted by the constructor and readable.

    ``epochs``, ``batch_size``, ``lr`` and ``optimizer`` are checked and handed to the trainer as
    one ``vaelib.TrainingSettings`` (``training(seed)``).
    """

    runs: int = 10
    epochs: int = 200
    seed: int = 0
    n_points: int = 10_000
    half_width: float = COSINE_HALF_WIDTH
    noise: float = COSINE_NOISE
    latent_dim: int = 2
    hidden: int = 32
    activation: str = "ptanh"
    delta: float = 0.1
    alpha_init: float = 1.0
    alpha_rule: str = "reverse"
    kl_reduction: str = "sum"
    optimizer: str = "adam"
    lr: float = 2e-4
    batch_size: int = 100
    init: str = "pytorch"
    n_samples: int = 10_000
    runner: str = "batched"
    engine: InitVar[str | None] = None  # the former name of runner (see the module's docstring)

    def __post_init__(self, engine: str | None) -> None:
        if engine is not None:
            _checks.one_of("engine", engine, RUNNERS)
            if self.runner not in ("batched", engine):
                raise ValueError(f"runner={self.runner!r} and engine={engine!r} (its former name) disagree; "
                                 "give runner")
            object.__setattr__(self, "runner", engine)
        for name in ("runs", "n_points", "latent_dim", "hidden", "n_samples"):
            _checks.positive_int(name, getattr(self, name))
        self.training()  # checks epochs, batch_size, lr and optimizer
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        _checks.positive_float("half_width", self.half_width)
        _checks.non_negative_float("noise", self.noise)
        _checks.non_negative_float("delta", self.delta)
        _checks.non_negative_float("alpha_init", self.alpha_init)
        _checks.one_of("activation", self.activation, ACTIVATIONS)
        _checks.one_of("alpha_rule", self.alpha_rule, ALPHA_RULES)
        _checks.one_of("kl_reduction", self.kl_reduction, KL_REDUCTIONS)
        _checks.one_of("init", self.init, INITS)
        _checks.one_of("runner", self.runner, RUNNERS)

    def training(self, seed: int = 0) -> TrainingSettings:
        """The training settings of a run with ``seed`` (``fit_batched`` takes each run's seed apart)."""
        return TrainingSettings(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, optimizer=self.optimizer,
                                seed=seed)


@dataclass(frozen=True)
class RunSpec:
    """One training run: which objective (``"proposed"`` or ``"elbo"``) and its seed."""

    objective: str
    seed: int


@dataclass
class TrainedRun:
    """A run after training: its spec, the trained model and objective (alpha lives in the
    objective) and the per-epoch history. Engines return these, on the CPU."""

    spec: RunSpec
    model: VAE
    objective: Objective
    history: History


Runner = Callable[[Ko2023Config, torch.Tensor, Sequence[RunSpec], bool], list[TrainedRun]]
Engine = Runner  # the former name


def make_data(config: Ko2023Config) -> torch.Tensor:
    """The experiment's data set: ``config.n_points`` noisy cosine points, float32 (n, 3)."""
    return cosine_surface(n=config.n_points, noise=config.noise, seed=config.seed, half_width=config.half_width)


def run_specs(config: Ko2023Config) -> list[RunSpec]:
    """``config.runs`` runs per objective, proposed first, with seeds seed, seed + 1, ..."""
    return [RunSpec(objective, config.seed + i) for objective in OBJECTIVES for i in range(config.runs)]


def elbo_kl_weight(config: Ko2023Config) -> float:
    """The weight beta of the per-point KL in the ELBO's training loss R + beta·KL: the batch size
    when the KL is summed over a minibatch's points, 1 when it is averaged."""
    return float(config.batch_size) if config.kl_reduction == "sum" else 1.0


def build_objective(config: Ko2023Config, objective: str) -> Objective:
    """A fresh objective: ``"proposed"`` is eq. 7 (``KoLagrangian``), ``"elbo"`` is eq. 6."""
    _checks.one_of("objective", objective, OBJECTIVES)
    if objective == "proposed":
        return KoLagrangian(delta=config.delta, alpha_init=config.alpha_init, alpha_rule=config.alpha_rule,
                            kl_reduction=config.kl_reduction)
    return ELBO(kl_reduction=config.kl_reduction)


def linear_vae_optimum(x: torch.Tensor, latent_dim: int = 2, kl_weight: float = 1.0) -> dict[str, float]:
    """What the best *linear* Gaussian VAE reaches on ``x`` with the loss R + kl_weight·KL (per point).

    Why it helps: it predicts, from the data's variances alone, whether the ELBO collapses.
    Minimising R + beta·KL, with R the squared error summed over coordinates, is maximising the ELBO
    of a Gaussian decoder with variance sigma^2 = beta/2. With a linear decoder the optimum is
    probabilistic PCA with that noise variance held fixed (Tipping & Bishop 1999; Lucas et al.
    2019): each of the top ``latent_dim`` principal directions whose variance lambda exceeds
    sigma^2 stays active, costing sigma^2 of reconstruction error and 0.5·log(lambda/sigma^2) nats of
    KL; every other direction collapses and costs its variance lambda. Returns ``recon``, ``kl``,
    ``active`` (the number of active directions) and ``decoder_variance`` (sigma^2).
    """
    x = _checks.data_matrix("x", x)
    _checks.positive_int("latent_dim", latent_dim)
    decoder_variance = _checks.positive_float("kl_weight", kl_weight) / 2
    variances = fit_pca(x, 1).explained_variance.double().tolist()
    kept = [v for v in variances[:latent_dim] if v > decoder_variance]
    recon = decoder_variance * len(kept) + sum(variances[len(kept):])
    kl = sum(0.5 * math.log(v / decoder_variance) for v in kept)
    return {"recon": recon, "kl": kl, "active": len(kept), "decoder_variance": decoder_variance}


def initial_run(config: Ko2023Config, spec: RunSpec) -> tuple[VAE, Objective]:
    """The untrained model (weights seeded by ``spec.seed``) and objective every runner starts from."""
    seed_everything(spec.seed)
    model = VAE(3, latent_dim=config.latent_dim, hidden=(config.hidden,), activation=config.activation)
    if config.init == "xavier":
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
    return model, build_objective(config, spec.objective)


def train_runs_loop(config: Ko2023Config, x: torch.Tensor, specs: Sequence[RunSpec],
                    progress: bool = True, state_dir: Path | None = None) -> list[TrainedRun]:
    """The reference runner: train the runs one after the other with ``vaelib.fit``.

    One progress bar counts the epochs of all runs together. With ``state_dir``, each run keeps
    its checkpoint there and continues from it if it exists (see ``reproduce``).
    """
    trained = []
    with tqdm(total=len(specs) * config.epochs, desc="Ko & Ko runs", unit="epoch", disable=not progress) as bar:
        for spec in specs:
            bar.set_postfix(objective=spec.objective, seed=spec.seed)
            model, objective = initial_run(config, spec)
            path = None if state_dir is None else Path(state_dir) / f"loop-{spec.objective}-seed{spec.seed}.ckpt"
            counted = bar.n
            history = fit(model, objective, x, config.training(spec.seed), progress=False,
                          on_epoch_end=lambda epoch, means: bar.update(1), checkpoint=path,
                          checkpoint_every=CHECKPOINT_EVERY, resume_from=path if path and path.exists() else None)
            bar.update(config.epochs - (bar.n - counted))  # the epochs a resumed run had done before
            trained.append(TrainedRun(spec, model, objective, history))
    return trained


def train_runs_batched(config: Ko2023Config, x: torch.Tensor, specs: Sequence[RunSpec],
                       progress: bool = True, state_dir: Path | None = None) -> list[TrainedRun]:
    """The default runner: train every run at once with ``vaelib.fit_batched``, each run
    from ``initial_run`` with its own seed, as ``train_runs_loop`` would (up to rounding). With
    ``state_dir``, the runs' state is kept there and training continues from it if it exists."""
    built = [initial_run(config, spec) for spec in specs]
    path = None if state_dir is None else Path(state_dir) / "batched.ckpt"
    histories = fit_batched([model for model, _ in built], [objective for _, objective in built], x,
                            config.training(), seeds=[spec.seed for spec in specs], progress=progress, checkpoint=path,
                            checkpoint_every=CHECKPOINT_EVERY, resume_from=path if path and path.exists() else None)
    return [TrainedRun(spec, model, objective, history)
            for spec, (model, objective), history in zip(specs, built, histories)]


RUNNERS: dict[str, Runner] = {"batched": train_runs_batched, "loop": train_runs_loop}
ENGINES = RUNNERS  # the former name: the same dict
# Ko2023Config(engine=...) is the former spelling of runner=...; config.engine still reads it. (Set
# after the class is made: in its body the name is the constructor's InitVar.)
setattr(Ko2023Config, "engine",  # noqa: B010 (an assignment would fight the InitVar's declared type)
        property(lambda config: config.runner, doc="The former name of ``runner``."))
# Epochs between two saves of the training state of a reproduction that keeps one (``state_dir``).
CHECKPOINT_EVERY = 10
STATE_CONFIG = "config.json"


@torch.no_grad()
def evaluate_run(config: Ko2023Config, x: torch.Tensor, run: TrainedRun) -> dict[str, float]:
    """A trained run's final values on the whole data set: recon, recon_at_mean and kl (and, for
    eq. 7, weighted_recon = (1+alpha)·R, weighted_kl = alpha·KL and alpha).

    The paper does not say at which code its R is scored, so both are reported (see
    ``vaelib.evaluation.reconstruction_and_kl``): ``recon`` at a *sampled* code z = mu + sigma·eps (one
    draw per point, the estimator that training minimised; eps from a generator seeded with the
    run's seed, so the evaluation is deterministic) and ``recon_at_mean`` at z = mu. The KL is the
    closed form in float64, summed over the n points or averaged, as ``config.kl_reduction`` says.
    """
    scores = reconstruction_and_kl(run.model.cpu(), _checks.data_matrix("x", x, 3), seed=run.spec.seed)
    recon = scores["recon_sampled"]
    kl = scores["kl"] * (len(x) if config.kl_reduction == "sum" else 1)
    values = {"recon": recon, "recon_at_mean": scores["recon_mean"], "kl": kl}
    if isinstance(run.objective, KoLagrangian):
        alpha = run.objective.alpha.item()
        values.update(weighted_recon=(1 + alpha) * recon, weighted_kl=alpha * kl, alpha=alpha)
    return values


def summarise_runs(results: Sequence[Mapping]) -> dict[str, dict]:
    """Table 1 from per-run results (dicts with "objective" and the column values): mean ± std."""
    ours = {}
    for objective in OBJECTIVES:
        rows = [r for r in results if r["objective"] == objective]
        if rows:
            ours[objective] = {name: mean_std([r[name] for r in rows]) for name in COLUMNS_OF[objective]}
    return ours


@torch.no_grad()
def decoded_samples(model: VAE, n: int, seed: int) -> torch.Tensor:
    """n points decoded from z ~ N(0, I), with a seeded generator: the generative model's samples."""
    return model.cpu().sample(n, generator=torch.Generator().manual_seed(seed))


def figure1_quality(config: Ko2023Config, samples: Mapping[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Figure 1 measured instead of judged by eye: ``vaelib.metrics.cosine_sample_quality`` of each
    objective's samples against fresh data (seed ``config.seed + FRESH_DATA_SEED``), and of a second
    fresh draw of the data itself (``"data"``), the level a perfect generator reaches. Every cloud is
    scored on ``QUALITY_POINTS`` points (coverage depends on the count) with the fresh data's kernel
    bandwidth."""
    fresh = cosine_surface(QUALITY_POINTS, noise=config.noise, seed=config.seed + FRESH_DATA_SEED,
                           half_width=config.half_width)
    reference = cosine_surface(QUALITY_POINTS, noise=config.noise, seed=config.seed + FRESH_DATA_SEED + 1,
                               half_width=config.half_width)
    bandwidth, shared = median_bandwidth(fresh), ReferenceSums()
    clouds = {"data": reference, **samples}
    return {name: cosine_sample_quality(cloud, fresh, max_points=QUALITY_POINTS, seed=config.seed,
                                        bandwidth=bandwidth, half_width=config.half_width, reference_sums=shared)
            for name, cloud in clouds.items()}


def figure1(data: torch.Tensor, samples: Mapping[str, torch.Tensor]):
    """The paper's Figure 1: (A) the data, (B) and (C) points decoded from N(0, I) after training
    with eq. 7 (the book's eq. K7) and with the ELBO, on the data's axes: two 3-D panels in the
    first row and the third centred below them, 4.6 inches wide (the book's width for a phone)."""
    clouds = {f"A: the data\n({len(data):,} points)": data,
              f"B: {len(samples['proposed']):,} samples\nafter eq. K7": samples["proposed"],
              f"C: {len(samples['elbo']):,} samples\nafter the ELBO": samples["elbo"]}
    fig = plots.point_clouds_3d(clouds)
    grid = fig.add_gridspec(2, 4)
    for ax, cell in zip(fig.axes, (grid[0, 0:2], grid[0, 2:4], grid[1, 1:3])):
        ax.set_subplotspec(cell)
        ax.set(xlabel="$x_1$", ylabel="$x_2$", zlabel="$x_3$")  # the book's names of a point's coordinates
    fig.set_size_inches(4.6, 5.6)
    return fig


@dataclass
class Reproduction:
    """The outcome of ``reproduce``: per-run results, Table 1 (ours and the paper's), Figure 1's samples."""

    config: Ko2023Config
    data: torch.Tensor
    results: list[dict]
    ours: dict[str, dict]
    samples: dict[str, torch.Tensor]
    sample_quality: dict[str, dict[str, float]]
    trained: list[TrainedRun] = field(repr=False)
    seconds: float = float("nan")

    def to_dict(self) -> dict:
        """The content of table1.json: config, the paper's table, ours, each run's final values and
        the measured quality of Figure 1's samples."""
        runs = [{"objective": r["objective"], "seed": r["seed"], "recon": r["recon"],
                 "recon_at_mean": r["recon_at_mean"], "kl": r["kl"], "alpha": r.get("alpha")} for r in self.results]
        return {"config": asdict(self.config), "paper": PAPER_TABLE1, "ours": self.ours, "runs": runs,
                "figure1_sample_quality": self.sample_quality}

    def sample_quality_table(self, style: str = "text", title: bool = True) -> str:
        """Figure 1's clouds measured (see ``figure1_quality``), in a ``vaelib.tables`` style."""
        names = list(self.sample_quality)
        rows = [[CLOUD_LABELS.get(name, name), *(self.sample_quality[name][key] for key in QUALITY_LABELS)]
                for name in names]
        caption = (f"Figure 1's samples against fresh data ({QUALITY_POINTS:,} points each; "
                   f"'{CLOUD_LABELS['data']}' is a second fresh draw of the data)")
        return render_table(["cloud", *QUALITY_COLUMNS], rows, style, caption if title else None,
                            reference_rows=[i for i, name in enumerate(names) if name == "data"])

    @staticmethod
    def sample_quality_legend() -> str:
        """What the arrows and the bold values of ``sample_quality_table`` mean, for a page's caption."""
        return tables.legend(QUALITY_COLUMNS, over_seeds=False, reference=[CLOUD_LABELS["data"]])

    def table(self, style: str = "text", title: bool = True) -> str:
        """Table 1 in the paper's layout, our row above the paper's for each objective
        (``style``: "text", "markdown" or "html", see ``format_table``)."""
        return format_table(self.ours, self.config, style=style, title=title)

    def figure(self):
        """Figure 1 (see ``figure1``)."""
        return figure1(self.data, self.samples)

    def save(self, out_dir: str | os.PathLike) -> dict[str, Path]:
        """Write table1.json and figure1.png into ``out_dir`` (created if needed) as one group
        (``vaelib._io.write_files``): both new files appear, or, after an error or a Ctrl-C, both
        old ones stay. The table is renamed last: it marks a complete result."""
        import matplotlib.pyplot as plt

        out = prepare_output_dir(out_dir)
        paths = {"table": out / "table1.json", "figure": out / "figure1.png"}
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        fig = self.figure()
        try:
            _io.write_files({paths["figure"]: lambda tmp: fig.savefig(tmp, format="png"), paths["table"]: text},
                            what="the result file")
        finally:
            plt.close(fig)
        return paths


def summarise(config: Ko2023Config, x: torch.Tensor, trained: Sequence[TrainedRun],
              seconds: float = float("nan")) -> Reproduction:
    """Evaluate every trained run, build Table 1 and draw Figure 1's samples from the first run
    (seed ``config.seed``) of each objective. Independent of the runner that trained the runs."""
    results = [{"objective": run.spec.objective, "seed": run.spec.seed, **evaluate_run(config, x, run)}
               for run in trained]
    samples = {}
    for objective in OBJECTIVES:
        first = next((run for run in trained if run.spec.objective == objective), None)
        if first is None:
            raise ValueError(f"trained holds no run of the objective {objective!r}; Figure 1 needs one of each")
        samples[objective] = decoded_samples(first.model, config.n_samples, config.seed)
    return Reproduction(config, x, results, summarise_runs(results), samples, figure1_quality(config, samples),
                        list(trained), seconds)


def reproduce(config: Ko2023Config | None = None, *, progress: bool = True, state_dir: str | os.PathLike | None = None,
              resume: bool = False, **overrides) -> Reproduction:
    """Run Ko & Ko's experiment: ``config.runs`` runs of each objective, evaluated and summarised.

    ``overrides`` replace fields of ``config`` (default ``Ko2023Config()``), e.g.
    ``reproduce(runs=3, epochs=20)``. Training uses ``RUNNERS[config.runner]``. ``check_feasible``
    runs first: a reproduction this machine cannot hold in memory is refused before anything is built.

    ``state_dir``: a folder in which the training state is kept, every ``CHECKPOINT_EVERY`` epochs,
    with the configuration (``config.json``). ``resume=True`` continues the reproduction saved
    there, which then ends exactly, bit for bit, as one that was never interrupted; the
    configuration must be the same (else a ValueError names what differs). Without ``resume`` a
    folder holding a saved state is refused (``FileExistsError``) rather than overwritten;
    ``discard_state`` removes it once the results are saved.
    """
    config = config if config is not None else Ko2023Config()
    if not isinstance(config, Ko2023Config):
        raise TypeError(f"config must be a Ko2023Config, got {type(config).__name__}")
    unknown = sorted(set(overrides) - {f.name for f in fields(Ko2023Config)})
    if unknown:
        raise TypeError(f"reproduce got unknown settings {unknown}; the settings are the fields of Ko2023Config")
    config = replace(config, **overrides)
    check_feasible(config)
    runner = RUNNERS[config.runner]
    if state_dir is not None:
        state_dir = _prepare_state(Path(state_dir), config, resume)
    x = make_data(config)
    specs = run_specs(config)
    start = time.perf_counter()
    trained = (runner(config, x, specs, progress) if state_dir is None
               else runner(config, x, specs, progress, state_dir=state_dir))  # type: ignore[call-arg]
    seconds = time.perf_counter() - start
    if [run.spec for run in trained] != specs:
        raise RuntimeError(f"runner {config.runner!r} returned runs {[run.spec for run in trained]}, "
                           f"expected one per spec in order: {specs}")
    return summarise(config, x, trained, seconds)


def train_objective(config: Ko2023Config, x: torch.Tensor, objective: str,
                    progress: bool = True) -> tuple[list[TrainedRun], dict[str, dict]]:
    """``config.runs`` runs of one objective (seeds seed, seed + 1, ...) through ``config.runner``,
    evaluated as in Table 1: returns the trained runs and their row of the table.

    For side experiments that change one setting (the KL's reduction, the step size) and need
    neither the other objective nor Figure 1.
    """
    _checks.one_of("objective", objective, OBJECTIVES)
    specs = [RunSpec(objective, config.seed + i) for i in range(config.runs)]
    trained = RUNNERS[config.runner](config, x, specs, progress)
    results = [{"objective": objective, **evaluate_run(config, x, run)} for run in trained]
    return trained, summarise_runs(results)[objective]


def sweep(config: Ko2023Config, x: torch.Tensor, setting: str, values: Sequence,
          objective: str = "proposed", progress: bool = True) -> dict[object, dict[str, dict]]:
    """The Table 1 row of ``objective`` for each value of one setting of ``config`` (e.g. ``"lr"``)."""
    if setting not in {f.name for f in fields(Ko2023Config)}:
        raise ValueError(f"setting must be a field of Ko2023Config, got {setting!r}")
    return {value: train_objective(replace(config, **{setting: value}), x, objective, progress)[1]
            for value in values}


def step_size_figure(rows: Mapping[float, Mapping], config: Ko2023Config):
    """Where alpha ends and what that costs, for each step size (``rows`` from
    ``sweep(config, x, "lr", ...)`` of the proposed objective), beside the paper's values.

    Left: the final alpha against lr, with the line alpha = lr. Right: R against the weight that
    alpha leaves on each point's KL (alpha·batch_size for a summed KL, alpha for a mean), with the
    prediction noise^2 + that weight: a Gaussian decoder of variance weight/2 costs that variance
    in each of the two directions a 2-D code keeps, and the noise across the surface stays.
    The paper's point uses our batch size and reading of the KL.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    lrs = sorted(rows)
    alpha = np.array([rows[lr]["alpha"]["mean"] for lr in lrs])
    alpha_std = np.array([rows[lr]["alpha"]["std"] or 0.0 for lr in lrs])
    recon = np.array([rows[lr]["recon"]["mean"] for lr in lrs])
    recon_std = np.array([rows[lr]["recon"]["std"] or 0.0 for lr in lrs])
    paper = PAPER_TABLE1["proposed"]
    per_alpha = elbo_kl_weight(config)
    fig, (left, right) = plt.subplots(2, 1, figsize=(4.6, 7.6), layout="constrained")
    left.errorbar(lrs, alpha, yerr=alpha_std, marker="o", capsize=3, label="ours: mean ± std over runs")
    left.plot(lrs, lrs, ls=":", color=plots.PALETTE[7], label="α = lr")
    left.axhline(paper["alpha"]["mean"], ls="--", color=plots.PALETTE[3], label="paper")
    left.set(xscale="log", yscale="log", xlabel="Adam step size lr", ylabel="final α",
             title="α ends about one step above 0")
    weights = alpha * per_alpha
    grid = np.geomspace(min(weights.min(), paper["alpha"]["mean"] * per_alpha) / 2, weights.max() * 2, 50)
    right.errorbar(weights, recon, yerr=recon_std, marker="o", capsize=3, label="ours, one point per lr")
    right.plot(grid, config.noise ** 2 + grid, ls=":", color=plots.PALETTE[7], label="noise² + KL weight")
    right.plot([paper["alpha"]["mean"] * per_alpha], [paper["recon"]["mean"]], marker="*", ms=13, ls="none",
               color=plots.PALETTE[3], label="paper")
    right.set(xscale="log", yscale="log", xlabel="KL weight per point left by α",
              ylabel="reconstruction error R", title="R grows with the KL weight α leaves")
    left.legend()
    right.legend()
    return fig


def format_table(ours: Mapping[str, Mapping], config: Ko2023Config, style: str = "text", title: bool = True) -> str:
    """Table 1 for each objective, our row then the paper's, as aligned plain text (a terminal),
    a Markdown table (a README) or an HTML table (a notebook: ``IPython.display.HTML``); the title
    says what the numbers are (a book page that captions the table leaves it out)."""
    unit = f"summed over the {config.n_points:,} points" if config.kl_reduction == "sum" else "per point"
    caption = (f"Table 1: mean ± std over {config.runs} runs of {config.epochs} epochs "
               f"(R per point; KL in nats, {unit})")
    rows: list[list[object]] = []
    for objective in OBJECTIVES:
        for source, table in (("ours", ours), ("paper", PAPER_TABLE1)):
            stats = table.get(objective, {})
            quote = as_printed if source == "paper" else lambda mean, std: (mean, std)  # the paper's as printed
            rows.append([f"{OBJECTIVE_LABELS[objective]}, {source}",
                         *(quote(stats[name]["mean"], stats[name]["std"]) if name in stats else None
                           for name in COLUMNS)])
    return render_table(["objective", *COLUMNS.values()], rows, style, caption if title else None)


def prepare_output_dir(out_dir: str | os.PathLike) -> Path:
    """Create ``out_dir`` if needed and check that table1.json and figure1.png can be written there
    (before any training: ``vaelib._io.check_writable``)."""
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir must be a folder path (str or os.PathLike), got {type(out_dir).__name__}")
    if os.fspath(out_dir) == "":
        raise ValueError("out_dir is empty; give a folder such as 'results'")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"out_dir {str(out)!r} exists and is not a folder; give a folder path")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _io.WriteError(exc.errno, f"out_dir {str(out)!r} cannot be created: {exc.strerror or exc}") from None
    for name in RESULT_FILES:
        _io.check_writable(out / name, "the result file", probe=name == RESULT_FILES[0])
    return out


RESULT_FILES = ("table1.json", "figure1.png")


def check_feasible(config: Ko2023Config) -> None:
    """What the configuration cannot check alone, before anything is built: every run's seed
    (run i uses seed + i, and seeds stay below 2**63), a learning rate that float32 can hold, and
    the memory the reproduction needs (``memory_needed``) against what this machine has free."""
    if config.seed + config.runs - 1 >= 2**63:
        raise ValueError(f"seed={config.seed} leaves no room for {config.runs} runs: run i uses seed + i and seeds "
                         f"must stay below 2**63; use a seed of at most {2**63 - config.runs}")
    check_lr(config.lr, [torch.empty(0)])  # the models are float32
    needed, available = memory_needed(config), _available_memory()
    if available is not None and needed > available:
        raise ValueError(f"this reproduction needs about {_gigabytes(needed)} of memory (runs={config.runs}, "
                         f"epochs={config.epochs}, n_points={config.n_points}, n_samples={config.n_samples}) and this "
                         f"machine has {_gigabytes(available)} free; use fewer runs, epochs or points")


def memory_needed(config: Ko2023Config) -> int:
    """An upper estimate, in bytes, of the memory a reproduction of ``config`` needs at its peak.

    Measured on the batched engine (20 to 400 runs, 200 to a million points): about 100 kB per
    run (model, objective, results), 600 bytes per data point (data, evaluation), 500 per Figure 1
    sample, 16 + 8·latent_dim bytes per run and point (two epochs of data order and noise drawn at
    once) and 128 per logged number (7 terms per run and epoch, in the history and the saved
    state), on top of 64 MB.
    """
    runs = 2 * config.runs
    return int(64e6 + runs * 100e3 + config.n_points * 600 + config.n_samples * 500
               + runs * config.n_points * (16 + 8 * config.latent_dim) + runs * config.epochs * 7 * 128)


def _available_memory() -> int | None:
    """Bytes this process can still allocate (``vaelib.limits.available_memory``)."""
    return limits.available_memory()


def _gigabytes(n: int) -> str:
    return f"{n / 1e9:.3g} GB"


def _prepare_state(state_dir: Path, config: Ko2023Config, resume: bool) -> Path:
    """The folder for a reproduction's training state, checked against ``config`` when resuming,
    created with the configuration recorded otherwise (see ``reproduce``)."""
    recorded = state_dir / STATE_CONFIG
    settings = json.loads(json.dumps(asdict(config)))
    if recorded.exists():
        if not resume:
            raise FileExistsError(f"{state_dir} holds the saved state of an unfinished reproduction; resume it "
                                  "(resume=True; --resume on the command line) or delete that folder to start again")
        try:  # a regular file within the size and nesting limits of every document vaelib reads
            saved = _io.read_document(recorded, "the reproduction's settings", kind="json")
        except (OSError, ValueError) as exc:
            raise ValueError(f"{recorded} cannot be read ({exc}); delete {state_dir} to start again") from None
        saved = saved if isinstance(saved, dict) else {}
        if "engine" in saved and "runner" not in saved:  # saved before the runner had its name
            saved["runner"] = saved.pop("engine")
        differences = [f"{key} was {saved.get(key, 'not set')!r}, now {value!r}"
                       for key, value in settings.items() if saved.get(key) != value]
        if differences:
            raise ValueError(f"{state_dir} holds a reproduction with other settings: {'; '.join(differences)}. Repeat "
                             "them to resume it, or delete that folder to start again")
        return state_dir
    if state_dir.exists() and not state_dir.is_dir():
        raise NotADirectoryError(f"state_dir {str(state_dir)!r} exists and is not a folder")
    state_dir.mkdir(parents=True, exist_ok=True)
    _io.write_file(recorded, json.dumps(settings, indent=2) + "\n", what="the reproduction's settings")
    return state_dir


def discard_state(state_dir: str | os.PathLike) -> None:
    """Remove a reproduction's training state (what ``reproduce`` and its runners wrote in
    ``state_dir``, nothing else), then the folder if that leaves it empty."""
    state_dir = Path(state_dir)
    if not state_dir.is_dir():
        return
    ours = [state_dir / STATE_CONFIG, state_dir / "batched.ckpt", *state_dir.glob("loop-*-seed*.ckpt")]
    for path in ours:
        path.unlink(missing_ok=True)
    _io.remove_stale_temporaries(state_dir, older_than=0)
    try:
        state_dir.rmdir()
    except OSError:
        pass
