"""Linear-algebra kernels: small dense helpers, the blocked factor and the CHOLMOD factor."""
