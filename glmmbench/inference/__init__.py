"""Inference from a fitted model (a `glmmbench.results.GLMMResult`).

- `tables`: ``anova`` (likelihood-ratio tests), ``coef_table`` (Wald, Satterthwaite,
  Kenward-Roger) and the ``confint`` dispatcher;
- `profile`, `bootstrap`: profile-likelihood intervals and the parametric bootstrap;
- `kenward_roger`, `marginal`: Kenward-Roger's adjusted covariance, population-averaged
  coefficients;
- `diagnostics`: a fit's checks as data (singular fit, gradient, Hessian, separation,
  scale, ...);
- `gamm`: smooth terms' edf, tests and partial effects.

The modules take a result and call the engine's stages (refits go through
`glmmbench.fit`). The result's methods (``res.confint()`` and the like) delegate here
with imports inside the methods, so a method, the module it calls and `glmmbench.fit`
form an import loop of three files, written down in `glmmbench.results`.
"""
