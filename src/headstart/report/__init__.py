"""Plots and HTML pages: a run's report, a ranking, a domain distance, a comparison, a few-shot table, each one
self-contained file (see `_html`)."""

from ._compare import plot_data_efficiency, plot_fewshot, write_compare_report, write_fewshot_report
from ._choose import plot_domains, plot_rank, write_distance_report, write_rank_report
from ._html import page, tokens_html
from ._mpl import subplots
from ._tune import write_tune_report
from ._run import decided_rows, plot_confusion, plot_learning_curves, plot_reliability, reproduce, write_report

__all__ = [
    "page",
    "subplots",
    "tokens_html",
    "decided_rows",
    "plot_data_efficiency",
    "plot_confusion",
    "plot_domains",
    "plot_fewshot",
    "plot_learning_curves",
    "plot_rank",
    "plot_reliability",
    "reproduce",
    "write_compare_report",
    "write_distance_report",
    "write_fewshot_report",
    "write_rank_report",
    "write_report",
    "write_tune_report",
]
