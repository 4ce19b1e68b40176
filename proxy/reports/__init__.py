"""Finance's view of the ledger: spend reports, per-call exports and FOCUS.

Everything here reads ``ledger_calls`` through a streamed result and keeps only what a
report's groups need, so memory does not grow with the number of rows in the range.
"""

from __future__ import annotations
