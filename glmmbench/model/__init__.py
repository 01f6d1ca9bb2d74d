"""The model description: what is fitted, before any numbers are optimised.

- `formula`: lme4's formula syntax parsed into terms (R's ``terms()`` rules);
- `design`: the frozen `Design` (X, y, weights, offset, random-effect terms and their
  covariance blocks, smooth terms split into fixed and random parts; R's
  ``model.matrix()`` rules);
- `smooths`: mgcv's bases and penalties and their mixed-model split;
- `theta`: lme4's relative covariance factor ``Lambda(theta)`` per block.

The design asks the family (``glmmbench.families``, the layer below) how to code and
check the response and what shapes the design; nothing here imports the engine,
results or inference.
"""
