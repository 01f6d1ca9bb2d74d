"""The numerical engine: from a design and a response to the (RE)ML or Laplace /
adaptive-quadrature deviance and its optimum.

- `linalg`: the only module that factors (blocked dense / sparse Cholesky, solves,
  log-determinants);
- `pls`: the LMM's penalized least squares; `pirls`: PIRLS for GLMMs;
- `quadrature`: Gauss-Hermite rules and adaptive quadrature;
- `deviance`: ``make_devfun(design, response, nagq, reml)`` -> ``f(params)``;
- `optimize`: BOBYQA and L-BFGS-B, finite-difference derivatives, lme4's convergence
  checks;
- `separation`: complete and quasi-complete separation in the fixed effects (Konis's
  linear program), checked before every fit of a family that can have it.

The engine reads the model (`glmmbench.model`) and the families; it never imports the
result, inference or the harness (`glmmbench.fit` chains the stages and assembles the
result above it).
"""
