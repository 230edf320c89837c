"""The run report: ``OUT/report/index.html``, a static page with figures, built from a finished output folder
(``build``: what to draw; ``data``: the tables and features; ``figures``: matplotlib; ``page``: the HTML)."""

from pipelines.report.build import REPORT_DIR, Report, ReportLimits, build_report
from pipelines.report.data import ReportError

__all__ = ["REPORT_DIR", "Report", "ReportError", "ReportLimits", "build_report"]
