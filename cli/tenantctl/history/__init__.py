"""Plan history for auditors: who applied which plan, a hash-chained log of applies, list/show/diff/prune."""
