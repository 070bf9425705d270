"""Call-accounting reports per extension, department, destination, trunk and day (CLI, HTTP and an HTML page).

Reports read the rollup tables that a trigger keeps as calls are stored (migration 2), and resolve departments
at query time from the configuration, so changing departments re-attributes past calls without rewriting data.
This package only reads the database: it must never write to it (reports open it read-only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from smdrd.lazy import lazy_attributes

if TYPE_CHECKING:
    from smdrd.reports.departments import UNASSIGNED, Directory, department_problems
    from smdrd.reports.queries import KINDS, Context, Query, Report, parse_query, run_report

#: where each public name lives: imported on first use (PEP 562), so that ``smdrd.reports.config`` (which the
#: configuration schema needs) does not load the report builders.
_HOMES = {"UNASSIGNED": "smdrd.reports.departments", "Directory": "smdrd.reports.departments",
          "department_problems": "smdrd.reports.departments", "KINDS": "smdrd.reports.queries",
          "Context": "smdrd.reports.queries", "Query": "smdrd.reports.queries", "Report": "smdrd.reports.queries",
          "parse_query": "smdrd.reports.queries", "run_report": "smdrd.reports.queries"}

__all__ = ["KINDS", "UNASSIGNED", "Context", "Directory", "Query", "Report", "department_problems", "parse_query",
           "run_report"]


__getattr__ = lazy_attributes(__name__, _HOMES)
