"""The evaluate stage: the paper's tables and figures from the workflow's artifacts, and the HTML report."""
