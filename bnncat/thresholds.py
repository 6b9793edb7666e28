"""Every threshold that judges a fit, in one place: fitting, diagnosis, report and CLI import them.

Constants only, so that any layer (models, identifiability, evaluation, report) may
import this module without importing anything above it.
"""

#: R-hat above which chains disagree (Vehtari et al. 2021).
RHAT_MAX = 1.01
#: Bulk ESS per chain below which a summary is too noisy (Vehtari et al. 2021).
MIN_ESS_PER_CHAIN = 100
#: Share of divergent transitions above which NUTS did not explore the posterior.
MAX_DIVERGENT_SHARE = 0.01
#: PSIS k-hat above which importance sampling (LOO rows, an approximation's p/q) is unreliable.
PARETO_K_MAX = 0.7
#: E-BFMI below which momentum resampling explores the energy poorly (Betancourt 2016).
MIN_E_BFMI = 0.3
#: NUTS's default maximum tree depth (PyMC, numpyro, nutpie, BlackJAX).
DEFAULT_MAX_TREEDEPTH = 10
#: Draws in all below which PSIS cannot fit its tail (at least 5 draws, a fifth of them):
#: no LOO rows then (a plain ensemble of 10 members has 10 draws).
MIN_LOO_DRAWS = 25
#: Draws per chain below which R-hat and ESS mean nothing; ``diagnose`` refuses fewer.
MIN_DRAWS = 20
#: Draws per chain below which ``diagnose`` refuses chains in superchains (then MIN_DRAWS
#: counts per superchain): split R-hat needs two halves of two draws.
MIN_DRAWS_GROUPED = 4
#: Nats of mean log-likelihood between functional modes above which the worse may be local optima.
LOCAL_OPTIMUM_GAP = 5.0
#: Nats by which ADVI's mean loss may still fall from the second-last to the last tenth of
#: its iterations (beyond three standard errors of that difference) and count as converged.
ADVI_LOSS_DROP = 1.0
