"""Call-accounting reports per extension, department, destination, trunk and day (CLI, HTTP and an HTML page).

Reports read the rollup tables that a trigger keeps as calls are stored (migration 2), and resolve departments
at query time from the configuration, so changing departments re-attributes past calls without rewriting data.
This package only reads the database: it must never write to it (reports open it read-only).
"""

from __future__ import annotations

from smdrd.reports.departments import UNASSIGNED, Directory, department_problems
from smdrd.reports.queries import KINDS, Context, Query, Report, parse_query, run_report

__all__ = ["KINDS", "UNASSIGNED", "Context", "Directory", "Query", "Report", "department_problems", "parse_query",
           "run_report"]
