"""Reports on scan results: read and merge scan outputs, and render the offline HTML page.

Torch-free: reading results never loads a model.
"""

from apncli.report.page import IMAGE_MODES, HtmlReportWriter, render_report
from apncli.report.results import ScanResults, load_results, merge_results

__all__ = ["IMAGE_MODES", "HtmlReportWriter", "ScanResults", "load_results", "merge_results", "render_report"]
