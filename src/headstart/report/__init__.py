"""Plots and HTML pages: a run's report, a ranking, a domain distance, a comparison, a few-shot table."""

from ._compare import plot_data_efficiency, plot_fewshot, write_compare_report, write_fewshot_report
from ._choose import plot_domains, plot_rank, write_distance_report, write_rank_report
from ._run import decided_rows, page_head, plot_confusion, plot_learning_curves, write_report

__all__ = [
    "decided_rows",
    "page_head",
    "plot_data_efficiency",
    "plot_confusion",
    "plot_domains",
    "plot_fewshot",
    "plot_learning_curves",
    "plot_rank",
    "write_compare_report",
    "write_distance_report",
    "write_fewshot_report",
    "write_rank_report",
    "write_report",
]
