"""What a run leaves behind: results.json and summary.md, report.html, the history, the comparison with a baseline."""
