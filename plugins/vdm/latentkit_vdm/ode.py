"""The old name of :mod:`latentkit_vdm.figures` (which holds the likelihood figures and the
per-t breakdown; the ODE itself is ``latentkit.ode``'s). Import from ``figures``; the names
below keep code that imports them from here working."""

# Old names, deprecated: the same objects as latentkit_vdm.figures'.
from latentkit_vdm.figures import likelihood_figures as likelihood_figures
from latentkit_vdm.figures import ode_decoder_bound as ode_decoder_bound
from latentkit_vdm.figures import per_t_breakdown as per_t_breakdown
from latentkit_vdm.figures import per_t_plot as per_t_plot

__all__: list[str] = []
