"""From a results tree to the paper's tables: aggregation, paired significance tests, tables, figures.

Every stage reads the results tree (``results/`` by default) and writes beside it:
``aggregate/`` (per seed, per task, per cell), ``stats/`` (strategy vs ``ppo`` comparisons),
``tables/`` (Markdown, LaTeX, CSV), ``figures/`` (PNG and PDF), ``report/`` (provenance appendix).
"""
