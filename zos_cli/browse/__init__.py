"""`zos browse`: the store served read-only with Datasette (docs/browse.md).

`serve.py` builds and runs the server, `plugin.py` is the Datasette plugin (what is served and
how it stays read-only and in scope), `queries.py` the scope rule and the canned queries,
`labels.py` names for keys, users and channels, `pages.py` the front page and the topic pages,
`chart.py` the balance chart as inline SVG. Only `serve.py` and `plugin.py` import Datasette.
"""
