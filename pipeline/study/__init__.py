"""Whole studies and what is done with finished runs: ``main`` (the offline study, reusing what is already
done) and ``reproduce`` (a finished run again, compared value by value)."""
