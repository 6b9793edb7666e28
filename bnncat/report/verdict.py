"""The verdict of a diagnosis: one plain sentence, a status and what to try next.

Statuses
--------
``a``  all agree: chains agree on raw weights, relabelled weights and predictions.
``b``  only symmetric label switching: raw weights disagree (or hop between
       copies), relabelled weights and predictions agree. Harmless; read the
       relabelled weights.
``c``  relabelling is ambiguous but predictions agree: trust predictions and
       functions of them, not individual weights.
``d``  genuine non-convergence or distinct functional modes.
``-``  cannot tell: a single chain or an ADVI approximation (no R-hat).
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bnncat.identifiability.members import how_members_differ
from bnncat.thresholds import (
    LOCAL_OPTIMUM_GAP,
    MAX_DIVERGENT_SHARE,
    MIN_E_BFMI,
    MIN_ESS_PER_CHAIN,
    PARETO_K_MAX,
    RHAT_MAX,
)

STATUS_LABELS = {
    "a": "all agree",
    "b": "only symmetric label switching",
    "c": "ambiguous relabelling, predictions agree",
    "d": "not converged",
    "-": "cannot tell",
}


@dataclass(frozen=True)
class Verdict:
    """Status code (see the module docstring), a plain sentence and next steps."""

    status: str
    sentence: str
    next_steps: tuple[str, ...] = field(default=())

    @property
    def label(self) -> str:
        """Short name of the status, e.g. ``"only symmetric label switching"``."""
        return STATUS_LABELS[self.status]

    def __str__(self) -> str:
        steps = "".join(f"\n  - {s}" for s in self.next_steps)
        return f"({self.status}) {self.label}: {self.sentence}" + (
            f"\nNext steps:{steps}" if steps else ""
        )


def tempered(verdict: Verdict, temperature: float) -> Verdict:
    """Say in the verdict that it speaks of a tempered posterior (likelihood to the 1/T)."""
    if temperature == 1.0:
        return verdict
    side = "cold" if temperature < 1 else "warm"
    effect = "narrower" if temperature < 1 else "wider"
    note = (
        f" This is a {side} posterior (T = {temperature:g}: the likelihood counts "
        f"{1 / temperature:.3g} times), {effect} than the Bayesian one by design; every check "
        "above speaks of it, not of the posterior."
    )
    return Verdict(verdict.status, verdict.sentence + note, verdict.next_steps)


def judge(
    *,
    convergence: pd.DataFrame,
    sampler: pd.DataFrame,
    hopping: pd.DataFrame,
    hopping_summary: dict[str, Any],
    functional: pd.DataFrame,
    kind: str,
    modes: pd.DataFrame | None = None,
    rhat_threshold: float = RHAT_MAX,
    vi_pareto_k: float | None = None,
    ordered: bool = False,
    log_ml_spread: float | None = None,
) -> Verdict:
    """Decide the status from the tables of a diagnosis (see :func:`diagnose`).

    ``ordered`` says the net already samples under ordering constraints
    (``OrderedMLP``), so the verdict does not suggest them; ``log_ml_spread`` is the
    range of the SMC runs' log marginal likelihood estimates (SMC fits only); ``modes``
    is the diagnosis's table of functional modes (share, LPD, symmetric copies).
    """
    chains = len(functional)
    rhat = convergence["max_rhat"]
    ess_pred = float(convergence.loc["predictions", "min_ess_bulk"])
    if kind != "mcmc":
        pred_rhat = float(rhat.loc["predictions"]) if chains > 1 else float("nan")
        if kind == "smc":
            return _judge_smc(chains, pred_rhat, rhat_threshold, log_ml_spread)
        if kind == "ensemble" and modes is not None:
            return _judge_ensemble(modes, chains)
        return _judge_approximation(vi_pareto_k, chains, pred_rhat, rhat_threshold)
    steps = _sampler_steps(sampler)
    if chains < 2:
        return _judge_single_chain(ess_pred, steps)
    n_modes = int(functional["mode"].nunique())
    spaces = ["predictions", "log-likelihood"]
    if functional.index.name == "superchain":  # many short chains: do the groups agree?
        spaces = [f"{space}, nested R-hat" for space in spaces]
    pred_rhat = float(np.nanmax(rhat.loc[spaces].to_numpy()))
    if n_modes > 1:
        return _judge_functional_modes(functional, pred_rhat, steps, modes)
    why = _unconverged_reasons(
        pred_rhat=pred_rhat,
        ess_pred=ess_pred,
        chains=chains,
        div_share=_divergences(sampler)[1],
        rhat_threshold=rhat_threshold,
    )
    if why:
        return _judge_unconverged(why, steps, ordered)
    return _judge_weights(
        rhat=rhat,
        pred_rhat=pred_rhat,
        hopping=hopping,
        hopping_summary=hopping_summary,
        rhat_threshold=rhat_threshold,
        steps=steps,
        ordered=ordered,
    )


def _divergences(sampler: pd.DataFrame) -> tuple[int, float]:
    """Return the number of divergent transitions and their share of all draws."""
    divergences = int(sampler["divergences"].sum()) if "divergences" in sampler else 0
    total = int(sampler["draws"].sum()) if "draws" in sampler else 1
    return divergences, divergences / max(total, 1)


def _sampler_steps(sampler: pd.DataFrame) -> list[str]:
    """List the next steps that NUTS's own warnings call for, whatever the status."""
    steps: list[str] = []
    divergences, div_share = _divergences(sampler)
    saturated = (
        float(sampler["treedepth_saturated"].mean()) if "treedepth_saturated" in sampler else 0
    )
    if divergences:
        steps.append(
            f"{divergences} divergent transitions ({div_share:.1%}): raise target_accept "
            "(0.95, 0.99) or use a hierarchical/narrower prior"
        )
    if saturated > 0.01:
        steps.append(
            f"{saturated:.0%} of transitions hit the tree-depth limit: the posterior is "
            "badly scaled for NUTS; standardise the data or use a narrower weight prior"
        )
    if "e_bfmi" in sampler and (sampler["e_bfmi"] < MIN_E_BFMI).any():
        steps.append(
            f"E-BFMI below {MIN_E_BFMI} in chains "
            f"{_chains(sampler.index[sampler['e_bfmi'] < MIN_E_BFMI])}: "
            "momentum resampling explores the energy poorly (heavy tails, funnels); "
            "try a non-hierarchical prior or longer tuning"
        )
    return steps


def _judge_single_chain(ess_pred: float, steps: list[str]) -> Verdict:
    """Return the ``-`` verdict of a single chain, which R-hat cannot judge."""
    return Verdict(
        "-",
        "a single chain: R-hat is undefined (it compares chains), so nothing can tell "
        "whether other chains would find other symmetric copies or other functions. "
        f"The predictions' bulk ESS is {ess_pred:.0f}.",
        (*steps, "run 4 or more chains (chains=4) and diagnose again"),
    )


def _judge_functional_modes(
    functional: pd.DataFrame, pred_rhat: float, steps: list[str], modes: pd.DataFrame | None
) -> Verdict:
    """Return the ``d`` verdict of chains that found different functions.

    Chains started from ensemble members (DEI, MCLMC) also hear how the members differ.
    """
    n_modes = int(functional["mode"].nunique())
    unit = "superchains" if functional.index.name == "superchain" else "chains"
    groups = "; ".join(
        f"mode {m}: {unit} {_chains(idx)}" for m, idx in functional.groupby("mode").groups.items()
    )
    fit_note, gap = "", 0.0
    if "mean_loglik" in functional:
        by_mode = functional.groupby("mode")["mean_loglik"].mean()
        gap = float(by_mode.max() - by_mode.min())
        fit_note = (
            f" Mode {int(by_mode.idxmax())} fits the data better by {gap:.1f} nats of "
            "mean log-likelihood: the others may be poor local optima."
            if gap > LOCAL_OPTIMUM_GAP
            else f" The modes fit the data about equally well (mean log-likelihood within "
            f"{gap:.1f} nats)."
        )
    return Verdict(
        "d",
        f"the {unit} found {n_modes} different functions ({groups}); no symmetry maps "
        f"one onto another, so relabelling cannot merge them (prediction R-hat "
        f"{pred_rhat:.2f}).{fit_note} The posterior is multimodal in function space and "
        "these chains do not weigh the modes against each other." + _members_note(modes),
        (*steps, *_functional_mode_steps(gap > LOCAL_OPTIMUM_GAP)),
    )


def _members_note(modes: pd.DataFrame | None) -> str:
    """Say how the ensemble members the chains started from differ; empty for other chains."""
    if modes is None or "symmetric_copies" not in modes:
        return ""
    differ = how_members_differ(
        len(modes), int(modes["pairs"].sum()), int(modes["symmetric_copies"].sum())
    )
    return (
        f" The chains started from ensemble members, which differ {differ}. {_mode_shares(modes)} "
        "Pooled, the chains weigh each function by the share of members that reached it, "
        "not by its posterior mass."
    )


def _mode_shares(modes: pd.DataFrame, noun: str = "chain") -> str:
    """Say each mode's share of chains and LPD per row, e.g. 'mode 1: 4 chain(s) (67%), ...'."""
    lpd = next(c for c in modes if c.startswith("lpd_per_row"))
    data = lpd[lpd.index("(") + 1 : -1]
    parts = [
        f"mode {m}: {len(row['chains'].split(','))} {noun}(s) ({row['share']:.0%}), "
        f"{data} LPD per row {row[lpd]:.3f} ± {row['lpd_se']:.3f}"
        for m, row in modes.iterrows()
    ]
    return "By mode: " + "; ".join(parts) + "."


def _judge_ensemble(modes: pd.DataFrame, members: int) -> Verdict:
    """Say how an ensemble's members differ (symmetry, function, both) and what that means."""
    pairs, copies = int(modes["pairs"].sum()), int(modes["symmetric_copies"].sum())
    sentence = (
        f"the {members} members differ {how_members_differ(len(modes), pairs, copies)}. "
        f"{_mode_shares(modes, 'member')} An ensemble is not a posterior sample: each member "
        "is one optimum (with its own Gaussian where draws were asked for), so its predictive "
        "weighs each function by the number of members that reached it, not by posterior mass, and "
        "R-hat and ESS say nothing about it."
    )
    lpd = next(c for c in modes if c.startswith("lpd_per_row"))
    steps = ["check the uncertainty against NUTS or DEI (method='dei') where it matters"]
    if len(modes) == 1:
        steps.insert(
            0,
            "every member found one function, so the ensemble's spread is only its members' "
            "own: for more diverse members try anchored=True, bootstrap=True or more members",
        )
    elif (modes[lpd].max() - modes[lpd].min()) > 2 * modes["lpd_se"].max():
        steps.insert(
            0,
            f"mode {int(modes[lpd].idxmin())} predicts worse than mode {int(modes[lpd].idxmax())} "
            "by more than 2 SE: a poor local optimum the ensemble averages in with full weight; "
            "chains from the members (method='dei') let the posterior weigh the modes",
        )
    return Verdict("-", sentence, tuple(steps))


def _unconverged_reasons(
    *, pred_rhat: float, ess_pred: float, chains: int, div_share: float, rhat_threshold: float
) -> list[str]:
    """List why the chains have not converged on the function; empty if they have."""
    why = []
    if pred_rhat > rhat_threshold:
        why.append(f"R-hat of the predictions or log-likelihood is {pred_rhat:.3f}")
    if ess_pred < MIN_ESS_PER_CHAIN * chains:
        why.append(
            f"the predictions' bulk ESS is only {ess_pred:.0f} (< {MIN_ESS_PER_CHAIN} per chain)"
        )
    if div_share > MAX_DIVERGENT_SHARE:
        why.append(f"{div_share:.1%} of transitions diverged")
    return why


def _judge_unconverged(why: list[str], steps: list[str], ordered: bool) -> Verdict:
    """Return the ``d`` verdict of chains that have not converged on the function."""
    return Verdict(
        "d",
        "the chains have not converged on the function: " + "; ".join(why) + ".",
        (
            *steps,
            "lengthen tuning and draws (tune=2000, draws=2000)",
            "raise target_accept to 0.95",
            *(() if ordered else ("try OrderedMLP, whose constraints remove the copies",)),
        ),
    )


def _judge_weights(
    *,
    rhat: pd.Series,
    pred_rhat: float,
    hopping: pd.DataFrame,
    hopping_summary: dict[str, Any],
    rhat_threshold: float,
    steps: list[str],
    ordered: bool,
) -> Verdict:
    """Decide between ``a``, ``b`` and ``c`` once the predictions agree."""
    raw_rhat = float(rhat.loc["raw weights"])
    rel_rhat = float(rhat.loc["relabelled weights"])
    hops = bool((hopping["copies_visited"] > 1).any() and (hopping["modal_share"] < 0.9).any())
    if raw_rhat <= rhat_threshold and not hops:
        return Verdict(
            "a",
            f"all chains agree, on raw weights (max R-hat {raw_rhat:.3f}), relabelled weights "
            f"and predictions (max R-hat {pred_rhat:.3f}); each chain stayed in one "
            "symmetric copy.",
            tuple(steps),
        )
    if rel_rhat <= rhat_threshold:
        where = _where_copies_differ(raw_rhat, hopping, hopping_summary, rhat_threshold)
        return Verdict(
            "b",
            f"{where}; after relabelling the weights agree "
            f"(max R-hat {rel_rhat:.3f}) and so do the predictions ({pred_rhat:.3f}). "
            "Harmless: read the relabelled weights (canonicalize), not the raw ones.",
            tuple(steps),
        )
    ambiguous = float(hopping_summary.get("ambiguous_share", 0.0))
    return Verdict(
        "c",
        f"the predictions agree (max R-hat {pred_rhat:.3f}) but relabelling does not make "
        f"the weights agree (max R-hat {rel_rhat:.2f}; {ambiguous:.0%} of draws have "
        "nearly tied units or near-zero keys, so no labelling is canonical). Trust "
        "predictions and functions of them, not individual weights.",
        (
            *steps,
            "if you need interpretable weights, try "
            + ("" if ordered else "OrderedMLP or ")
            + "a narrower net (fewer weakly identified units)",
        ),
    )


def _where_copies_differ(
    raw_rhat: float,
    hopping: pd.DataFrame,
    hopping_summary: dict[str, Any],
    rhat_threshold: float,
) -> str:
    """Describe how the chains' symmetric copies differ, for the ``b`` verdict."""
    settled = bool((hopping["modal_share"] >= 0.9).all())
    if raw_rhat > rhat_threshold and settled:
        return (
            f"raw weights disagree (max R-hat {raw_rhat:.2f}) because the chains sit in "
            f"{hopping_summary['distinct_modal_copies']} different symmetric copies"
        )
    if raw_rhat > rhat_threshold:
        return (
            f"raw weights disagree (max R-hat {raw_rhat:.2f}) because the chains move "
            "between symmetric copies (mostly weakly identified units trading labels, "
            "see the per-unit label change rates)"
        )
    return (
        "the chains hop between symmetric copies, so every raw weight's marginal "
        "is a mixture of copies"
    )


def _judge_smc(
    chains: int, pred_rhat: float, rhat_threshold: float, log_ml_spread: float | None
) -> Verdict:
    """Judge the particles of independent SMC runs by their agreement."""
    sentence = (
        f"the draws are the final particles of {chains} independent SMC run(s) tempered from "
        "the prior, not Markov chains: there are no divergences, and resampling duplicates "
        "particles, so ESS overstates the independent draws."
    )
    agree = chains > 1 and pred_rhat <= rhat_threshold
    if chains > 1:
        sentence += (
            f" R-hat of the predictions across runs is {pred_rhat:.2f}: the runs' particles "
            + ("cover the same function." if agree else "settled on different modes.")
        )
    if log_ml_spread is not None and chains > 1:
        agree = agree and log_ml_spread <= 1.0
        sentence += f" Their log marginal likelihood estimates span {log_ml_spread:.1f} nats" + (
            "." if log_ml_spread <= 1.0 else ": more than 1, they did not reach one posterior."
        )
    sentence += " Even agreeing runs can all miss the same posterior mass."
    steps = (
        ()
        if agree
        else (
            "raise draws or threshold (0.9), lower correlation_threshold (0.001), try kernel='mh'",
        )
    )
    return Verdict("-" if agree else "d", sentence, (*steps, "confirm with NUTS where it matters"))


def _judge_approximation(
    vi_pareto_k: float | None, chains: int, pred_rhat: float, rhat_threshold: float
) -> Verdict:
    """Judge draws from fitted approximations (Gaussians: ADVI, Laplace) by PSIS k-hat."""
    single = "one run leaves no chains to compare (no R-hat), " if chains < 2 else ""
    cannot = (
        "the draws come from one fitted approximation per run (a Gaussian, as in ADVI or "
        f"Laplace), not from Markov chains: {single}there are no divergences, and nothing "
        "here can show other modes, heavier tails or correlations that the approximation "
        "leaves out."
    )
    if chains > 1 and pred_rhat > rhat_threshold:
        cannot += (
            f" Its {chains} runs disagree on the predictions (R-hat {pred_rhat:.2f}): they "
            "stopped in different optima, so the posterior has several modes."
        )
    if vi_pareto_k is None:
        return Verdict(
            "-",
            cannot + " The fit holds no log densities of the draws, so PSIS k-hat is unknown.",
            ("check against a NUTS fit (method='nuts') before trusting the uncertainty",),
        )
    if vi_pareto_k > PARETO_K_MAX:
        return Verdict(
            "d",
            cannot + f" PSIS k-hat of the approximation is {vi_pareto_k:.2f} "
            f"(> {PARETO_K_MAX}): it is far from the posterior; do not trust its "
            "uncertainty.",
            (
                "fit by NUTS (method='nuts')",
                "or a richer approximation: full rank instead of mean field, more "
                "optimisation steps or a smaller learning rate",
            ),
        )
    return Verdict(
        "-",
        cannot + f" PSIS k-hat of the approximation is {vi_pareto_k:.2f} "
        f"(<= {PARETO_K_MAX}): close enough to the posterior for importance-weighted "
        "estimates.",
        ("confirm with a NUTS fit (method='nuts') where the uncertainty matters",),
    )


def _chains(index: Any) -> str:
    return index_ranges(index)


def index_ranges(index: Any) -> str:
    """Chain numbers in runs: ``0-3, 5, 7-9`` (a list of 1000 chains stays short)."""
    runs: list[list[int]] = []
    for i in sorted(int(i) for i in index):
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


def _functional_mode_steps(local_optimum: bool) -> tuple[str, ...]:
    """Next steps for chains in different functional modes.

    Separated modes that fit equally well stay separated however long NUTS tunes, but
    the pooled chains can predict better than any one mode, and enough chains make
    that predictive repeatable across seeds (measured in README, "The model grid").
    """
    pool = (
        "run more chains (chains=8 or more) and use their pooled predictive: it averages "
        "the modes in proportion to how often chains find them; judge it by whether the "
        "split of chains between modes and the held-out or LOO score repeat across seeds "
        "and beat each mode's alone (R-hat across separated modes stays high by "
        "construction)"
    )
    no_vi = (
        "do not switch to ADVI to hide this: ADVI settles in one mode and reports none of "
        "the others"
    )
    if not local_optimum:
        return (pool, no_vi)
    return (
        "compare the modes on held-out data (diagnose(..., X_test=, y_test=)) before "
        "trusting the better-fitting one: on quantised or misspecified data it may be "
        "fitting noise",
        pool,
        "if the worse mode also predicts worse, it is a local optimum: a wider net or a "
        "broader prior may connect the modes",
        no_vi,
    )
