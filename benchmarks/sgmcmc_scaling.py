"""SG-MCMC on many rows: cost per step against N, and held-out LPD at N = 100,000.

The issue's targets for ``method="sgmcmc"`` on synthetic rows (``data.load("sine",
n=N, noise=0.1)``, a 1x32 tanh MLP):

``scaling``
    Milliseconds per step of the compiled sampler (SGLD, 4 chains, batches of 100
    rows; compilation excluded; best of 5 runs, the sizes in turn) for N
    from 1,000 to 100,000, and the fitted slope of log time against log N
    (target: at most 0.1).
``accuracy``
    At N = 100,000 (10,000 with ``--quick``): SGLD with the defaults but for
    ``draws``, ``thin`` and ``burn_in``; ADVI (batches of 1,000 rows) and a deep
    ensemble (4 members) with the defaults; each fit in a fresh process
    (compilation included, imports not). Held-out LPD per row on 2,000 fresh rows,
    and SGLD's relative to each (target: within 5%).

    python benchmarks/sgmcmc_scaling.py [--part scaling|accuracy] [--quick]
"""

import time
import warnings

import numpy as np
import pandas as pd
from parts import in_fresh_process, run_parts

SIZES = (1_000, 3_000, 10_000, 30_000, 100_000)
HIDDEN = (32,)
CHAINS = 4
#: Timed runs of every size; the best counts
ROUNDS = 5
SGLD = {"method": "sgmcmc", "kernel": "sgld", "draws": 200, "thin": 50, "burn_in": 20_000}
CONTENDERS = {
    "sgld": SGLD,
    "advi": {"method": "advi", "batch_size": 1_000},
    "ensemble": {"method": "ensemble", "members": 4},
}


def _data(n: int, seed: int):
    from bnncat import data

    return data.load("sine", n=n, noise=0.1, seed=seed)


def compiled_run(n: int, steps: int):
    """Compile an SGLD run of ``steps`` steps on ``n`` rows; return it as a call of no arguments."""
    from bnncat.models import MLP
    from bnncat.models.inference import sgmcmc
    from bnncat.models.inference.flat_draws import prior_flat
    from bnncat.models.inference.laplace_curvature import flat_model
    from bnncat.models.inference.minibatch_density import minibatch_density
    from bnncat.models.inference.problem import prepare_problem

    ds = _data(n, seed=2)
    draws = steps // 10
    problem = prepare_problem(MLP(HIDDEN), ds.X, ds.y, draws=draws, random_seed=1, store_mu=False)
    options = sgmcmc._check_options(
        draws, CHAINS, "sgld", None, None, "constant", None, None, 0, 10
    ) | sgmcmc._check_sghmc("sgld", None, None)
    options = sgmcmc._resolve_defaults(options, n, draws)
    plan = sgmcmc.make_schedule(draws, options)
    import jax

    density = minibatch_density(problem.model)
    starts = prior_flat(problem.model, flat_model(problem.model), CHAINS, seed=1)
    program = sgmcmc.chain_program(density, options, draws)
    keys = jax.random.split(jax.random.PRNGKey(1), 2 * CHAINS).reshape(2, CHAINS, -1)
    args = (starts, density.X, density.y, sgmcmc.plan_inputs(plan), keys)
    program(*args).block_until_ready()  # compile
    return lambda: program(*args).block_until_ready()


def part_scaling(quick: bool) -> pd.DataFrame:
    from bnncat.models.jax_runtime import jax_session

    steps = 2_000 if quick else 10_000
    best = dict.fromkeys(SIZES, np.inf)
    with jax_session("float64"):
        runs = {n: compiled_run(n, steps) for n in SIZES}
        # rounds over all sizes in turn: a busy machine slows every size alike
        for _ in range(ROUNDS):
            for n, run in runs.items():
                start = time.perf_counter()
                run()
                best[n] = min(best[n], time.perf_counter() - start)
    slope = np.polyfit(np.log(SIZES), np.log([best[n] for n in SIZES]), 1)[0]
    return pd.DataFrame(
        {
            "N": list(SIZES),
            "steps": steps,
            "ms_per_step": [1e3 * best[n] / steps for n in SIZES],
            "slope_log_time_vs_log_N": slope,
        }
    )


def one_fit(contender: str, n: int) -> dict:
    """Fit one contender in this (fresh) process: wall time and held-out LPD per row."""
    from bnncat.evaluation import log_predictive_density
    from bnncat.models import MLP, fit

    train, test = _data(n, seed=2), _data(2_000, seed=9)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = fit(
            MLP(HIDDEN), train.X, train.y, random_seed=1, progressbar=False, **CONTENDERS[contender]
        )
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "lpd": float(log_predictive_density(idata, test.X, test.y)["mean"])}


def part_accuracy(quick: bool) -> pd.DataFrame:
    n = 10_000 if quick else 100_000
    runs = {name: in_fresh_process("sgmcmc_scaling", "one_fit", name, n) for name in CONTENDERS}
    rows = []
    for name, run in runs.items():
        rows.append(
            {
                "method": name,
                "N": n,
                "seconds": run["seconds"],
                "lpd_per_row": run["lpd"],
                "sgld_relative_gap": (runs["sgld"]["lpd"] - run["lpd"]) / abs(run["lpd"]),
            }
        )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    run_parts(__doc__, "sgmcmc_scaling", {"scaling": part_scaling, "accuracy": part_accuracy})
