"""How often the SBC verdict fails a method that is calibrated by construction.

The "method" here is the prior itself: its draws ignore the data, so the rank of the
true value of any function of the parameters alone among them is exactly uniform, and
every failure of the verdict is a false alarm. The log-likelihood of the simulated data
is left out: it depends on the data, and only a posterior ranks it uniformly.

For each model of ``benchmarks/sbc.py`` and each of ``--seeds`` seeds, the CI tier's
design (``--simulations`` truths, ranks among 100 draws) is run with prior draws in place
of fits, and the share of seeds where some quantity leaves (a) its own 99% band and (b)
the family-wise band of the verdict is printed with its binomial standard error. No
sampling, so it needs no executor.

    python benchmarks/sbc_null.py --seeds 100 --models mlp-normal,mixture-mdn

writes ``benchmarks/out/sbc/null.csv`` and ``null.md``.
"""

import argparse
import sys
import warnings

import numpy as np
import pandas as pd
from sbc import MODELS, OUT, X  # benchmarks/sbc.py: the same models at the same inputs

from bnncat.evaluation.sbc import _probe, sbc_net, sbc_result, simulate_prior, verdicts

DRAWS = 100  # the CI tier ranks among 100 thinned draws


def false_alarms(name: str, seed: int, simulations: int) -> tuple[bool, bool, int]:
    """One seed's verdicts with prior draws as the fits: (own band failed, family failed, Q)."""
    net = sbc_net(MODELS[name])
    truth = simulate_prior(net, X, simulations, seed)
    prior = simulate_prior(net, X, simulations * DRAWS, seed + 10_000)
    fits = [prior.isel(draw=slice(s * DRAWS, (s + 1) * DRAWS)) for s in range(simulations)]
    pit = sbc_result(net, X, _probe(X), truth, fits, "prior", DRAWS, seed).pit
    table = verdicts(pit.drop_vars("log_lik"), seed)
    return (not table["inside_own_band"].all(), not table["pass"].all(), len(table))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--simulations", type=int, default=50)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    rows = []
    for name in args.models.split(","):
        runs = [false_alarms(name, seed, args.simulations) for seed in range(args.seeds)]
        own, family, q = (np.array(v) for v in zip(*runs, strict=True))
        n = len(runs)
        rows.append(
            {
                "model": name,
                "quantities": int(q[0]),
                "seeds": n,
                "some quantity outside its own 99% band": _rate(own.mean(), n),
                "outside the family-wise 99% band": _rate(family.mean(), n),
            }
        )
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT / "null.csv", index=False)
    (OUT / "null.md").write_text(table.to_markdown(index=False) + "\n")
    print(table.to_markdown(index=False))
    return 0


def _rate(p: float, n: int) -> str:
    return f"{p:.3f} ± {np.sqrt(p * (1 - p) / n):.3f}"


if __name__ == "__main__":
    sys.exit(main())
