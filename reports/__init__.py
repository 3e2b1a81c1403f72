"""A job's report: what report.json holds (job_report.py), the words that describe a job
(words.py, shared by the terminal and the pages), and its self-contained HTML page (html.py).

It sits below the cluster layer so that both the `dtrain report` command and the head
node's web pages (cluster/api.py) draw the same report.
"""
