"""A witness of Carnet journals (C2SP ``tlog-witness``), runnable apart: ``carnet witness serve``.

It keeps, per log it trusts, the latest checkpoint it cosigned, and cosigns a new one only if a
consistency proof shows that it extends that one. Run by someone other than the operator (a
patients' association, say), it makes a rolled-back or forked journal visible without anyone
having kept a checkpoint.
"""
