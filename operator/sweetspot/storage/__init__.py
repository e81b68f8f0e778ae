"""The one package that talks to Optuna and its database (see `store` for what is kept where)."""

import optuna

# Optuna logs a line per study and trial at INFO: ours say what happened (Events, `sweetspot run`), so only its
# warnings pass, whichever of this package's modules is imported first.
optuna.logging.set_verbosity(optuna.logging.WARNING)
