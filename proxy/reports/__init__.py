"""Finance's view of the ledger: spend reports, per-call exports and FOCUS.

Spend reports read the hourly rollup (``ledger_hourly``) when it holds the answer and
``ledger_calls`` otherwise; exports read ``ledger_calls``. Every read is a streamed result
that keeps only what a report's groups need, so memory does not grow with the range.
"""

from __future__ import annotations
