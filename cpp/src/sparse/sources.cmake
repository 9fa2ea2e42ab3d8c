# Sparse sources: appended by the sparse work (issue 4).
